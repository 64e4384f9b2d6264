// The address parser smtpd's MAIL, RCPT and VRFY use: a port of the parts of
// Python's email._header_value_parser that smtpd.SMTPChannel._getaddr calls
// (get_angle_addr and get_addr_spec, with comments, quoted strings, obsolete
// local parts, domain literals and obsolete routes), so that the server
// accepts and normalises exactly the addresses smtpd does.
//
// Not ported: RFC 2047 encoded words inside an address (=?utf-8?q?...?=) are
// read as plain atoms instead of being decoded, and whitespace is ASCII
// whitespace only.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace smtp {

/// An address smtpd's _getaddr() would refuse by raising (smtpd then drops
/// the connection; this server answers a syntax error instead).
class AddressError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// What _getaddr() returns: the normalised address (its `addr_spec`, "<>" for
/// the null path) and the rest of the argument (the mail parameters).
struct ParsedAddress {
    std::string address;
    std::string rest;
};

/// smtpd's SMTPChannel._getaddr(arg): empty `arg` gives two empty strings;
/// an argument starting with '<' (after whitespace) is an angle-addr, anything
/// else an addr-spec. Throws AddressError where the Python parser raises.
ParsedAddress get_address(std::string_view arg);

/// Python's email quote_string: wraps in double quotes, escaping '\' and '"'.
std::string quote_string(std::string_view value);

}  // namespace smtp
