// asyncore's error routing around one handler call, shared by the module
// helpers in dispatcher.cpp and the loop's per-event dispatch in loop.cpp
// (inlined there: it runs once per readiness event).
#pragma once

#include <asyncore/dispatcher.hpp>
#include <asyncore/error.hpp>

#include <system_error>

namespace asyncore::detail {

/// Inside a catch block: true if the exception being handled is a
/// disconnect errno (asyncore's _DISCONNECTED), which means handle_close().
inline bool handling_disconnect() {
    try {
        throw;
    } catch (const std::system_error& e) {
        return e.code().category() == std::generic_category() &&
               is_disconnect_errno(e.code().value());
    } catch (...) {
        return false;
    }
}

/// Runs `fn` (a handler call on `d`): a disconnect errno becomes
/// handle_close(), ExitNow propagates, anything else goes to handle_error().
/// If handle_close() or handle_error() throws in turn, the channel is closed
/// so the loop goes on.
template <class Fn>
void routed(Dispatcher& d, Fn&& fn) {
    try {
        fn();
    } catch (const ExitNow&) {
        throw;
    } catch (...) {
        const bool disconnect = handling_disconnect();
        try {
            if (disconnect) {
                d.handle_close();
            } else {
                d.handle_error(std::current_exception());
            }
        } catch (const ExitNow&) {
            throw;
        } catch (...) {
            d.close();
        }
    }
}

}  // namespace asyncore::detail
