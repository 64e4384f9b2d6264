// version.hpp: the macros, header_version and the library's version() agree.
// Including asyncore.hpp (not version.hpp) checks that the whole-API header
// brings the version too.

#include <asyncore/asyncore.hpp>

#include <doctest/doctest.h>

#include <string>

// The macros are plain integers, usable in #if.
#if ASYNCORE_VERSION_MAJOR < 0 || ASYNCORE_VERSION_MINOR < 0 || ASYNCORE_VERSION_PATCH < 0
#error "version macros are not non-negative integers"
#endif

TEST_SUITE("version") {
    TEST_CASE("the macros spell header_version") {
        std::string spelled = std::to_string(ASYNCORE_VERSION_MAJOR) + "." +
                              std::to_string(ASYNCORE_VERSION_MINOR) + "." +
                              std::to_string(ASYNCORE_VERSION_PATCH);
        CHECK(spelled == ASYNCORE_VERSION_STRING);
        CHECK(asyncore::header_version == spelled);
    }

    TEST_CASE("the library reports the version of its headers") {
        static_assert(noexcept(asyncore::version()));
        CHECK(asyncore::version() == asyncore::header_version);
    }

}  // TEST_SUITE
