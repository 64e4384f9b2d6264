// <asyncore/asyncore.hpp> brings the whole public API. (Each header is also
// compiled on its own: see tests/headers/header_check.cpp.in.)

#include <asyncore/asyncore.hpp>

#include <doctest/doctest.h>

#include <string>
#include <type_traits>

TEST_SUITE("headers") {
    TEST_CASE("asyncore.hpp declares every core class and function") {
        asyncore::ChannelMap map;
        asyncore::Dispatcher d(map);
        asyncore::Socket none;
        asyncore::Address empty;
        asyncore::TimerHandle no_timer;
        CHECK(d.fileno() == -1);
        CHECK_FALSE(none);
        CHECK(empty.empty());
        CHECK_FALSE(no_timer);
        CHECK(std::is_base_of_v<asyncore::Dispatcher, asyncore::DispatcherWithSend>);
        CHECK(std::is_base_of_v<asyncore::Dispatcher, asyncore::FileDispatcher>);
        CHECK(std::is_base_of_v<std::exception, asyncore::ExitNow>);
        CHECK(std::string(asyncore::error_category().name()) == "asyncore");
        asyncore::loop(asyncore::Duration::zero(), map, 1);
        asyncore::close_all(map);
        CHECK(map.empty());
    }

}  // TEST_SUITE
