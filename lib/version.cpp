// The version compiled into the library, for programs that want to know which
// build of the shared library they were loaded with.

#include <asyncore/version.hpp>

namespace asyncore {

std::string_view version() noexcept {
    return ASYNCORE_VERSION_STRING;
}

}  // namespace asyncore
