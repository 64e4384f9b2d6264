// smtpd's SMTPChannel and SMTPServer on asyncore-cpp: an AsyncChat per
// connection running a smtp::Session, and the listening dispatcher that
// creates them. Accepted messages are appended to a Mailbox. Given a TLS
// context, the server offers STARTTLS. The session's timeouts are the
// channel's idle timeout.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <asyncore/async_chat.hpp>
#include <asyncore/dispatcher.hpp>
#include <asyncore/tls.hpp>

#include "mbox.hpp"
#include "smtp_session.hpp"

namespace smtp {

/// One SMTP connection. Created by SmtpServer and owned by the map; the
/// mailbox must outlive it.
class SmtpChannel : public asyncore::AsyncChat, private SessionHost {
  public:
    /// Sends the 220 greeting at once. With `tls` (a server context that
    /// must outlive the channel) the session offers STARTTLS.
    SmtpChannel(asyncore::Socket sock, const asyncore::Address& peer, const SessionOptions& options,
                Mailbox& mailbox, asyncore::ChannelMap& map,
                const asyncore::TlsContext* tls = nullptr);

    void collect_incoming_data(std::string_view data) override;
    void found_terminator() override;
    /// Stops reading while the replies queued for this client pass the output
    /// high watermark (a client pipelining commands without reading the
    /// replies), so neither side's memory grows without bound.
    bool readable() override;
    /// Logs plaintext a client pipelined after STARTTLS (discarded unread).
    void handle_tls_established() override;
    /// The client was silent for the session's timeout: the session answers
    /// 421 and the channel closes once that is sent. A client that cannot
    /// receive a reply is dropped without one.
    void handle_idle_timeout() override;

    const Session& session() const noexcept { return session_; }

  private:
    void send_replies(std::string bytes) override;
    void switch_terminator(std::string_view terminator) override;
    void set_input_timeout(std::chrono::milliseconds timeout) override;
    void close_after_replies() override;
    void start_tls_after_replies() override;
    std::string process_message(const Envelope& envelope, std::string& data) override;

    Mailbox& mailbox_;
    const asyncore::TlsContext* tls_;
    Session session_;
};

/// smtpd's SMTPServer: listens and gives each connection an SmtpChannel.
class SmtpServer : public asyncore::Dispatcher {
  public:
    /// Binds and listens on `address`. Throws std::system_error. With `tls`
    /// (a server context) every session offers STARTTLS.
    SmtpServer(const asyncore::Address& address, SessionOptions options, Mailbox& mailbox,
               asyncore::ChannelMap& map, std::optional<asyncore::TlsContext> tls = std::nullopt);

    void handle_accepted(asyncore::Socket sock, const asyncore::Address& addr) override;

  private:
    SessionOptions options_;
    Mailbox& mailbox_;
    std::optional<asyncore::TlsContext> tls_;
};

/// socket.getfqdn() for this host: the canonical name of gethostname() when
/// it contains a dot, else the host name itself.
std::string local_fqdn();

}  // namespace smtp
