// The SMTP conversation of Python's smtpd.SMTPChannel, apart from the socket:
// a state machine fed with asynchat's two calls (collect_incoming_data with
// every chunk of input, found_terminator at each terminator) that answers
// through a SessionHost. SmtpChannel runs it on an AsyncChat; the unit tests
// run it on a recording host.
//
// Replies are byte-for-byte smtpd's. Where smtpd itself breaks, this session
// answers instead:
//   - an address smtpd's parser raises on, or a SIZE parameter without a
//     value, gets the command's syntax error (smtpd drops the connection);
//   - a command line that is not UTF-8 gets "500 Error: bad syntax" (smtpd
//     drops the connection on the UnicodeDecodeError);
//   - after "552 Error: Too much mail data" the session is back in command
//     state, as after any other message (smtpd stays in DATA state and reads
//     the client's next commands as message text);
//   - the extended MAIL line limit belongs to the session (smtpd keeps it in
//     a class attribute that every connection shares and resets);
//   - a command line longer than any command may be is answered "500 Error:
//     line too long" whatever its bytes (smtpd decodes what it kept of it
//     first, which depends on how the line was split into reads);
//   - a CR or LF of the client's text echoed in a reply (an unknown command,
//     VRFY's argument) is sent as a space, so that every reply line ends
//     where the server ends it (smtpd sends them as they came).
//
// STARTTLS (RFC 3207), which smtpd lacks, when SessionOptions::starttls is
// set: EHLO advertises it until TLS runs; "STARTTLS" answers "220 Ready to
// start TLS", asks the host to start TLS after that reply and forgets
// everything the client said before (the client must EHLO again, RFC 3207
// 4.2). The error replies use RFC 3207's texts where it has one:
//   "501 Syntax error (no parameters allowed)"  STARTTLS with an argument
//   "503 Error: TLS already active"             STARTTLS once TLS runs
// and smtpd's unknown-command reply when STARTTLS is not offered.
//
// Timeouts (RFC 5321 4.5.3.2), which smtpd lacks: a client that stays silent
// for 5 minutes while the session awaits a command, or for 3 minutes in the
// middle of a message, gets Postfix's
//   "421 4.4.2 <fqdn> Error: timeout exceeded"
// and the connection closes once that is sent, as after QUIT; a message cut
// short is never delivered. The host counts the silence (SessionHost::
// set_input_timeout) and tells the session (timeout_expired()).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace smtp {

/// smtpd's DATA_SIZE_DEFAULT.
inline constexpr std::size_t data_size_default = 33554432;
/// smtpd's SMTPChannel.command_size_limit: the longest command line, CRLF excluded.
inline constexpr std::size_t command_size_limit = 512;
/// RFC 5321 4.5.3.2.7: "An SMTP server SHOULD have a timeout of at least 5
/// minutes while it is awaiting the next command from the sender."
inline constexpr std::chrono::milliseconds command_timeout_default = std::chrono::minutes(5);
/// The wait for more message text after DATA: RFC 5321's data block timeout
/// (4.5.3.2.5); Session::input_timeout() says why.
inline constexpr std::chrono::milliseconds data_timeout_default = std::chrono::minutes(3);

struct SessionOptions {
    /// The name in the greeting and in the HELO/EHLO replies (smtpd: socket.getfqdn()).
    std::string fqdn = "localhost";
    /// What follows the name in the 220 greeting (smtpd: its __version__).
    std::string version = "asyncore-cpp smtp_server";
    /// The largest message accepted, in bytes; 0 means no limit (as in smtpd).
    std::size_t data_size_limit = data_size_default;
    /// Announce SMTPUTF8 and accept MAIL's SMTPUTF8 parameter.
    bool enable_smtputf8 = false;
    /// Offer STARTTLS: the host can run TLS (SessionHost::start_tls_after_replies).
    bool starttls = false;
    /// How long the client may stay silent while the session awaits a
    /// command; zero waits forever.
    std::chrono::milliseconds command_timeout = command_timeout_default;
    /// How long the client may stay silent while it sends a message (after
    /// DATA's 354); zero waits forever.
    std::chrono::milliseconds data_timeout = data_timeout_default;
};

/// Who sent a message to whom, as smtpd passes it to process_message().
struct Envelope {
    std::string peer;  ///< the client's IP address
    std::string mailfrom;
    std::vector<std::string> rcpttos;
    std::vector<std::string> mail_options;  ///< MAIL parameters, upper-cased
    std::vector<std::string> rcpt_options;  ///< the last RCPT's parameters, upper-cased
};

/// What a Session needs from the connection it runs on.
class SessionHost {
  public:
    /// Sends `bytes` (one or more CRLF-terminated reply lines).
    virtual void send_replies(std::string bytes) = 0;
    /// Sets the input terminator: "\r\n" for commands, "\r\n.\r\n" for DATA.
    virtual void switch_terminator(std::string_view terminator) = 0;
    /// Calls Session::timeout_expired() once the client has sent nothing for
    /// `timeout` (zero: never), counting from now and again from each input.
    /// The session sets it at each change of state, replacing the last one.
    virtual void set_input_timeout(std::chrono::milliseconds timeout) = 0;
    /// Closes the connection once everything pushed has been sent.
    virtual void close_after_replies() = 0;
    /// Starts TLS (server side) once everything pushed has been sent. Input
    /// that followed the STARTTLS line in clear must be discarded, never
    /// taken as if it came over TLS (RFC 3207 section 5).
    virtual void start_tls_after_replies() = 0;
    /// smtpd's process_message: `data` is the message with dot-stuffing
    /// removed and lines joined by "\n" (the host may consume it). Returns ""
    /// to answer "250 OK", or the reply line to send instead.
    virtual std::string process_message(const Envelope& envelope, std::string& data) = 0;

  protected:
    ~SessionHost() = default;
};

class Session {
  public:
    enum class State { command, data };

    /// `peer` is the client's IP address. The host must outlive the session.
    Session(SessionOptions options, std::string peer, SessionHost& host);

    /// Pushes the 220 greeting and sets the command terminator.
    void start();
    /// asynchat's collect_incoming_data: input up to the next terminator.
    /// Input beyond the current limit (the command line limit, or the data
    /// size limit in DATA state) is dropped here, so memory stays bounded.
    void collect_incoming_data(std::string_view data);
    /// asynchat's found_terminator: handles the command or message collected.
    void found_terminator();
    /// The client stayed silent for input_timeout(): answers 421 and closes
    /// once that is sent, as QUIT does; a message being received is dropped.
    /// Does nothing once the session is quitting.
    void timeout_expired();

    State state() const noexcept { return state_; }
    /// How long the client may stay silent in the current state (zero: forever).
    std::chrono::milliseconds input_timeout() const noexcept;
    const std::string& seen_greeting() const noexcept { return seen_greeting_; }
    bool extended_smtp() const noexcept { return extended_smtp_; }
    const Envelope& envelope() const noexcept { return envelope_; }
    /// True once QUIT was answered: later input is ignored.
    bool quitting() const noexcept { return quitting_; }
    /// True once STARTTLS was answered with 220: the rest runs over TLS.
    bool tls() const noexcept { return tls_; }
    /// Bytes held for the line or message being received.
    std::size_t buffered_bytes() const noexcept { return received_.size(); }

  private:
    using Handler = void (Session::*)(const std::string& arg, bool has_arg);
    struct Command {
        std::string_view name;
        Handler handler;
    };
    static const Command commands[];

    void reply(std::string_view line);
    void flush();
    void handle_command(std::string line, std::size_t size);
    void handle_message(std::string data);
    void enter(State state);
    void set_post_data_state();
    void set_rset_state();
    std::size_t max_command_size() const noexcept;
    std::string syntax_error(std::string_view base) const;

    void smtp_helo(const std::string& arg, bool has_arg);
    void smtp_ehlo(const std::string& arg, bool has_arg);
    void smtp_noop(const std::string& arg, bool has_arg);
    void smtp_quit(const std::string& arg, bool has_arg);
    void smtp_help(const std::string& arg, bool has_arg);
    void smtp_vrfy(const std::string& arg, bool has_arg);
    void smtp_mail(const std::string& arg, bool has_arg);
    void smtp_rcpt(const std::string& arg, bool has_arg);
    void smtp_rset(const std::string& arg, bool has_arg);
    void smtp_data(const std::string& arg, bool has_arg);
    void smtp_expn(const std::string& arg, bool has_arg);
    void smtp_starttls(const std::string& arg, bool has_arg);
    bool check_mail_params(std::vector<std::string> params, const std::string& syntaxerr);

    SessionOptions options_;
    SessionHost& host_;
    State state_ = State::command;
    Envelope envelope_;
    std::string seen_greeting_;
    bool extended_smtp_ = false;
    bool quitting_ = false;
    bool tls_ = false;
    bool starting_tls_ = false;  ///< start TLS after the replies being flushed
    std::size_t mail_size_limit_ = command_size_limit;  ///< MAIL's line limit after EHLO
    std::size_t num_bytes_ = 0;  ///< bytes collected for the current line or message
    std::string received_;       ///< the current line or message, up to the limit
    std::string out_;            ///< replies of the current input, pushed together
};

/// smtpd's de-transparency (RFC 5321 4.5.2), in place: splits `data` at
/// CRLF, drops one leading '.' from each line, joins the lines with "\n".
void remove_dot_stuffing(std::string& data);

}  // namespace smtp
