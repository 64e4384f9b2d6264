#include "smtp_channel.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>
#include <ctime>
#include <utility>

namespace smtp {
namespace {

SessionOptions with_starttls(SessionOptions options, bool on) {
    options.starttls = on;
    return options;
}

}  // namespace

SmtpChannel::SmtpChannel(asyncore::Socket sock, const asyncore::Address& peer,
                         const SessionOptions& options, Mailbox& mailbox, asyncore::ChannelMap& map,
                         const asyncore::TlsContext* tls)
    : AsyncChat(std::move(sock), map),
      mailbox_(mailbox),
      tls_(tls),
      session_(with_starttls(options, tls != nullptr), peer.host(), *this) {
    // The session bounds what it keeps of a line or a message (the command
    // limits, --data-size-limit) and answers a too-long line itself, so
    // AsyncChat's own bound on a record must not close the channel first.
    set_max_input_buffer(0);
    session_.start();
}

void SmtpChannel::collect_incoming_data(std::string_view data) {
    session_.collect_incoming_data(data);
}

void SmtpChannel::found_terminator() {
    session_.found_terminator();
}

bool SmtpChannel::readable() {
    return !output_paused();
}

void SmtpChannel::send_replies(std::string bytes) {
    push(std::move(bytes));
}

void SmtpChannel::switch_terminator(std::string_view terminator) {
    set_terminator(terminator);
}

// The channel's idle timeout runs out when the client has neither sent
// anything nor taken any reply still waiting for room in the socket.
void SmtpChannel::set_input_timeout(std::chrono::milliseconds timeout) {
    set_idle_timeout(asyncore::Duration(timeout));
}

// No reply can reach a client while the STARTTLS handshake waits for the 220
// to be written or runs: it goes neither in clear nor over TLS. A client that
// left a 221 or 421 unread for a whole timeout (the channel stays open until
// it is written) will not read another.
void SmtpChannel::handle_idle_timeout() {
    bool handshaking = tls_pending() || (tls_active() && !tls_established());
    if (handshaking || session_.quitting()) return handle_close();
    session_.timeout_expired();
}

void SmtpChannel::close_after_replies() {
    close_when_done();
}

// Called from found_terminator() of the STARTTLS line: AsyncChat drops the
// rest of that read, and TLS starts once the 220 is written.
void SmtpChannel::start_tls_after_replies() {
    start_tls(*tls_, true);
}

void SmtpChannel::handle_tls_established() {
    if (plaintext_discarded() == 0) return;
    log_info(addr().host() + " pipelined " + std::to_string(plaintext_discarded()) +
                 " bytes after STARTTLS; discarded unread",
             "info");
}

// The 250 that follows promises the message is on disk; a failed append has
// been cut off again and is answered with RFC 5321's texts for 452 (out of
// space) or 451 (any other local error). The connection stays usable.
std::string SmtpChannel::process_message(const Envelope& envelope, std::string& data) {
    std::string entry =
        format_mbox_entry(envelope.mailfrom, envelope.peer, data, std::time(nullptr));
    data = std::string();
    std::error_code ec = mailbox_.append(entry);
    if (!ec) return {};
    log_info("cannot append to " + mailbox_.path() + ": " + ec.message(), "error");
    if (ec == std::errc::no_space_on_device || ec.value() == EDQUOT)
        return "452 Requested action not taken: insufficient system storage";
    return "451 Requested action aborted: local error in processing";
}

SmtpServer::SmtpServer(const asyncore::Address& address, SessionOptions options, Mailbox& mailbox,
                       asyncore::ChannelMap& map, std::optional<asyncore::TlsContext> tls)
    : Dispatcher(map), options_(std::move(options)), mailbox_(mailbox), tls_(std::move(tls)) {
    create_socket(address.family(), SOCK_STREAM);
    set_reuse_addr();
    bind(address);
    listen(128);
}

void SmtpServer::handle_accepted(asyncore::Socket sock, const asyncore::Address& addr) {
    asyncore::make<SmtpChannel>(std::move(sock), addr, options_, mailbox_, map(),
                                tls_ ? &*tls_ : nullptr);
}

std::string local_fqdn() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
    addrinfo hints{};
    hints.ai_flags = AI_CANONNAME;
    addrinfo* res = nullptr;
    std::string fqdn = name;
    if (::getaddrinfo(name, nullptr, &hints, &res) == 0) {
        if (res->ai_canonname != nullptr &&
            std::string_view(res->ai_canonname).find('.') != std::string_view::npos)
            fqdn = res->ai_canonname;
        ::freeaddrinfo(res);
    }
    return fqdn;
}

}  // namespace smtp
