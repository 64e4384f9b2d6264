#include "smtp_channel.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>
#include <ctime>
#include <utility>

namespace smtp {

SmtpChannel::SmtpChannel(asyncore::Socket sock, const asyncore::Address& peer,
                         const SessionOptions& options, Mailbox& mailbox, asyncore::ChannelMap& map)
    : AsyncChat(std::move(sock), map), mailbox_(mailbox), session_(options, peer.host(), *this) {
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

void SmtpChannel::close_after_replies() {
    close_when_done();
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
                       asyncore::ChannelMap& map)
    : Dispatcher(map), options_(std::move(options)), mailbox_(mailbox) {
    create_socket(address.family(), SOCK_STREAM);
    set_reuse_addr();
    bind(address);
    listen(128);
}

void SmtpServer::handle_accepted(asyncore::Socket sock, const asyncore::Address& addr) {
    asyncore::make<SmtpChannel>(std::move(sock), addr, options_, mailbox_, map());
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
