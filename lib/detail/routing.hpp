// asyncore's error routing around one handler call, shared by the module
// helpers in dispatcher.cpp and the loop's per-event dispatch in loop.cpp
// (inlined there: it runs once per readiness event; the failure path is out
// of line).
#pragma once

#include <asyncore/dispatcher.hpp>
#include <asyncore/error.hpp>

#include <exception>

namespace asyncore::detail {

/// What a handler call on `d` threw (never ExitNow): a disconnect errno goes
/// to handle_close(), anything else to handle_error(). If that throws in
/// turn, the map's ErrorPolicy decides: log_and_close logs it with the
/// channel's repr and closes the channel (nothing escapes but ExitNow);
/// propagate rethrows it, leaving the channel as it is (asyncore).
void route_failure(Dispatcher& d, std::exception_ptr failure);

/// Runs `fn` (a handler call on `d`) with asyncore's routing: ExitNow
/// propagates, any other exception goes to route_failure().
template <class Fn>
void routed(Dispatcher& d, Fn&& fn) {
    try {
        fn();
    } catch (const ExitNow&) {
        throw;
    } catch (...) {
        route_failure(d, std::current_exception());
    }
}

}  // namespace asyncore::detail
