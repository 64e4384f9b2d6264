// The smtp sample's protocol: CPython's test_smtpd expectations for
// SMTPChannel, replayed on smtp::Session through AsyncChat's record
// scanning (AsyncChat::feed), plus the mbox output.
#include "smtp_session.hpp"

#include <doctest/doctest.h>

#include <asyncore/async_chat.hpp>

#include <fcntl.h>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mbox.hpp"
#include "smtp_address.hpp"

namespace {

struct Delivered {
    smtp::Envelope envelope;
    std::string data;
};

// An AsyncChat without a socket that runs a Session and records what the
// session sends, as test_smtpd's mock socket does.
class Chat : public asyncore::AsyncChat, private smtp::SessionHost {
  public:
    explicit Chat(smtp::SessionOptions options = options_for_test())
        : AsyncChat(map_), session_(std::move(options), "peer-address", *this) {
        set_max_input_buffer(0);
        session_.start();
    }

    static smtp::SessionOptions options_for_test() {
        smtp::SessionOptions o;
        o.fqdn = "mail.example.org";
        return o;
    }

    /// test_smtpd's write_line: the line and a CRLF arrive in one read.
    /// Returns the last reply line sent (mock_socket's `last`), CRLF included.
    std::string write_line(std::string_view line) {
        feed(std::string(line) + "\r\n");
        return last();
    }

    std::string last() const {
        if (sent_.size() < 2) return {};
        auto start = sent_.rfind("\r\n", sent_.size() - 3);
        return start == std::string::npos ? sent_ : sent_.substr(start + 2);
    }

    void collect_incoming_data(std::string_view data) override {
        session_.collect_incoming_data(data);
    }
    void found_terminator() override { session_.found_terminator(); }
    /// What the channel does when the client stayed silent too long.
    void expire_timeout() { session_.timeout_expired(); }

    const smtp::Session& session() const { return session_; }
    const std::string& sent() const { return sent_; }
    bool closing() const { return closing_; }
    int tls_starts() const { return tls_starts_; }
    /// The last timeout the session set; -1 ms before the first.
    std::chrono::milliseconds input_timeout() const { return input_timeout_; }
    std::vector<Delivered> messages;
    std::string status;  ///< what process_message answers

  private:
    void send_replies(std::string bytes) override { sent_ += bytes; }
    void switch_terminator(std::string_view t) override { set_terminator(t); }
    void set_input_timeout(std::chrono::milliseconds timeout) override { input_timeout_ = timeout; }
    void close_after_replies() override { closing_ = true; }
    void start_tls_after_replies() override {
        // The reply must already be out: TLS starts after it.
        CHECK(sent_.ends_with("220 Ready to start TLS\r\n"));
        ++tls_starts_;
    }
    std::string process_message(const smtp::Envelope& envelope, std::string& data) override {
        messages.push_back({envelope, data});
        return status;
    }

    asyncore::ChannelMap map_;
    smtp::Session session_;
    std::string sent_;
    bool closing_ = false;
    int tls_starts_ = 0;
    std::chrono::milliseconds input_timeout_{-1};
};

smtp::SessionOptions with_limit(std::size_t limit) {
    auto o = Chat::options_for_test();
    o.data_size_limit = limit;
    return o;
}

smtp::SessionOptions with_starttls() {
    auto o = Chat::options_for_test();
    o.starttls = true;
    return o;
}

smtp::SessionOptions with_timeouts(std::chrono::milliseconds command,
                                   std::chrono::milliseconds data) {
    auto o = Chat::options_for_test();
    o.command_timeout = command;
    o.data_timeout = data;
    return o;
}

smtp::SessionOptions with_smtputf8() {
    auto o = Chat::options_for_test();
    o.enable_smtputf8 = true;
    return o;
}

// A private directory for mailbox files, removed with its contents.
struct ScratchDir {
    std::string path;
    ScratchDir() {
        char tmpl[] = "/tmp/smtp_test_XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~ScratchDir() { std::filesystem::remove_all(path); }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

void write_file(const std::string& path, const std::string& data,
                std::ios::openmode mode = std::ios::trunc) {
    std::ofstream out(path, std::ios::binary | mode);
    out << data;
}

// What another program appending to the mbox does.
void append_file(const std::string& path, const std::string& data) {
    write_file(path, data, std::ios::app);
}

// An entry with dot lines, an escaped From line and a header.
std::string sample_entry() {
    return smtp::format_mbox_entry("eggs@example", "127.0.0.1",
                                   "Subject: sample\n\n.\nFrom the start\nline\n", 86400);
}

// Two committed entries in a new mailbox at `path`; returns the file's text.
std::string committed_base(const std::string& path) {
    smtp::Mailbox box(path);
    REQUIRE(!box.append(smtp::format_mbox_entry("a@example", "::1", "Subject: one\n\n1\n", 0)));
    REQUIRE(!box.append(smtp::format_mbox_entry("b@example", "::1", "Subject: two\n\n2\n", 0)));
    return read_file(path);
}

void send_message(Chat& chat, std::string_view from, std::string_view to, std::string_view data) {
    REQUIRE(chat.write_line(std::string("MAIL From:") + std::string(from)) == "250 OK\r\n");
    REQUIRE(chat.write_line(std::string("RCPT To:") + std::string(to)) == "250 OK\r\n");
    REQUIRE(chat.write_line("DATA") == "354 End data with <CR><LF>.<CR><LF>\r\n");
    chat.write_line(data);
}

}  // namespace

TEST_SUITE("smtp") {
    TEST_CASE("the greeting names the server after the host") {
        Chat chat;
        CHECK(chat.sent() == "220 mail.example.org asyncore-cpp smtp_server\r\n");
    }

    TEST_CASE("greeting commands answer with smtpd's texts") {
        Chat chat;
        SUBCASE("an empty line is bad syntax") {
            CHECK(chat.write_line("") == "500 Error: bad syntax\r\n");
        }
        SUBCASE("EHLO lists SIZE, 8BITMIME and HELP") {
            auto before = chat.sent().size();
            chat.write_line("EHLO example");
            CHECK(chat.sent().substr(before) ==
                  "250-mail.example.org\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250 HELP\r\n");
            CHECK(chat.session().extended_smtp());
        }
        SUBCASE("EHLO without a name") {
            CHECK(chat.write_line("EHLO") == "501 Syntax: EHLO hostname\r\n");
        }
        SUBCASE("HELO answers with the host name") {
            CHECK(chat.write_line("HELO example") == "250 mail.example.org\r\n");
            CHECK(chat.session().seen_greeting() == "example");
        }
        SUBCASE("HELO without a name") {
            CHECK(chat.write_line("HELO") == "501 Syntax: HELO hostname\r\n");
        }
        SUBCASE("a second greeting is refused, whichever the two are") {
            for (auto first : {"HELO example", "EHLO example"}) {
                for (auto second : {"HELO example", "EHLO example"}) {
                    Chat c;
                    c.write_line(first);
                    CHECK(c.write_line(second) == "503 Duplicate HELO/EHLO\r\n");
                }
            }
        }
    }

    TEST_CASE("HELP, NOOP, QUIT, VRFY, EXPN, RSET and unknown commands") {
        Chat chat;
        CHECK(chat.write_line("HELP") ==
              "250 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY\r\n");
        CHECK(chat.write_line("HELP MAIL") == "250 Syntax: MAIL FROM: <address>\r\n");
        CHECK(chat.write_line("HELP SPAM") ==
              "501 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY\r\n");
        CHECK(chat.write_line("NOOP") == "250 OK\r\n");
        CHECK(chat.write_line("NOOP hi") == "501 Syntax: NOOP\r\n");
        CHECK(chat.write_line("VRFY eggs@example") ==
              "252 Cannot VRFY user, but will accept message and attempt delivery\r\n");
        CHECK(chat.write_line("VRFY") == "501 Syntax: VRFY <address>\r\n");
        CHECK(chat.write_line("VRFY <") == "502 Could not VRFY <\r\n");
        CHECK(chat.write_line("EXPN") == "502 EXPN not implemented\r\n");
        CHECK(chat.write_line("RSET hi") == "501 Syntax: RSET\r\n");
        CHECK(chat.write_line("RSET") == "250 OK\r\n");
        CHECK(chat.write_line("UNKNOWN_CMD") ==
              "500 Error: command \"UNKNOWN_CMD\" not recognized\r\n");
        CHECK(chat.write_line("EHLO example") == "250 HELP\r\n");
        CHECK(chat.write_line("HELP rcpt") ==
              "250 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n");
    }

    TEST_CASE("client text echoed in a reply cannot break its line: CR and LF become spaces") {
        Chat chat;
        const std::size_t greeting = chat.sent().size();
        chat.feed("FOO\rBAR\nBAZ\r\nVRFY @\nx\r\n");
        CHECK(chat.sent().substr(greeting) ==
              "500 Error: command \"FOO BAR BAZ\" not recognized\r\n"
              "502 Could not VRFY @ x\r\n");
    }

    TEST_CASE("a line too long gets the same reply however its reads were split") {
        // Too long, and not UTF-8 past the limit.
        const std::string line = std::string(520, 'A') + "\xff\r\n";
        Chat whole, bytewise;
        whole.feed(line);
        for (char c : line)
            bytewise.feed(std::string_view(&c, 1));
        CHECK(whole.last() == "500 Error: line too long\r\n");
        CHECK(bytewise.last() == "500 Error: line too long\r\n");
    }

    TEST_CASE("QUIT answers 221 and closes once sent; later input is ignored") {
        Chat chat;
        chat.write_line("HELO example");
        CHECK(!chat.closing());
        CHECK(chat.write_line("QUIT bye bye") == "221 Bye\r\n");
        CHECK(chat.closing());
        CHECK(chat.write_line("NOOP") == "221 Bye\r\n");
    }

    TEST_CASE("MAIL needs a greeting, an address and no parameters without EHLO") {
        Chat chat;
        CHECK(chat.write_line("MAIL from:<foo@example.com>") == "503 Error: send HELO first\r\n");
        chat.write_line("HELO example");
        CHECK(chat.write_line("MAIL from:<foo@example.com> SIZE=1234") ==
              "501 Syntax: MAIL FROM: <address>\r\n");
        CHECK(chat.write_line("MAIL from eggs@example") == "501 Syntax: MAIL FROM: <address>\r\n");
        CHECK(chat.write_line("MAIL from:") == "501 Syntax: MAIL FROM: <address>\r\n");
        CHECK(chat.write_line("MAIL") == "501 Syntax: MAIL FROM: <address>\r\n");
        CHECK(chat.write_line("MAIL from:   <foo@example.com>") == "250 OK\r\n");
        CHECK(chat.write_line("MAIL from:spam@example") == "503 Error: nested MAIL command\r\n");
    }

    TEST_CASE("MAIL after EHLO takes SIZE and BODY and refuses the rest") {
        Chat chat(with_limit(1048));
        chat.write_line("EHLO example");
        std::string syntax = "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n";
        CHECK(chat.write_line("MAIL from eggs@example") == syntax);
        CHECK(chat.write_line("MAIL FROM:<eggs@example> SIZE=invalid") == syntax);
        CHECK(chat.write_line("MAIL FROM:<eggs@example> SIZE") == syntax);
        CHECK(chat.write_line("MAIL FROM:<eggs@example> SIZE=") == syntax);
        CHECK(chat.write_line("MAIL FROM:<eggs@example> SIZE=2096") ==
              "552 Error: message size exceeds fixed maximum message size\r\n");
        CHECK(chat.write_line("MAIL FROM:<eggs@example> SIZE=99999999999999999999999") ==
              "552 Error: message size exceeds fixed maximum message size\r\n");
        CHECK(chat.write_line("MAIL FROM:<eggs@example> ham=green") ==
              "555 MAIL FROM parameters not recognized or not implemented\r\n");
        CHECK(chat.write_line("MAIL from: <foo@example.com> size=20 SMTPUTF8") ==
              "555 MAIL FROM parameters not recognized or not implemented\r\n");
        CHECK(chat.write_line("MAIL from: <foo@example.com> size=20 SMTPUTF8 BODY=UNKNOWN") ==
              "501 Error: BODY can only be one of 7BIT, 8BITMIME\r\n");
        CHECK(chat.write_line("MAIL from:   <foo@example.com> size=20 body=8bitmime") ==
              "250 OK\r\n");
        CHECK(chat.session().envelope().mail_options ==
              std::vector<std::string>{"SIZE=20", "BODY=8BITMIME"});
        CHECK(chat.write_line("RCPT TO:<eggs@example> ham=green") ==
              "555 RCPT TO parameters not recognized or not implemented\r\n");
        CHECK(chat.write_line("RCPT to: <foo@example.com>") == "250 OK\r\n");
    }

    TEST_CASE("addresses are normalised as smtpd's parser does") {
        Chat chat;
        chat.write_line("EHLO example");
        struct Case {
            const char* line;
            const char* mailfrom;
        };
        for (auto c :
             {Case{"MAIL from:<eggs@example>", "eggs@example"}, Case{"MAIL from:<>", "<>"},
              Case{"MAIL from: <\"Fred Blogs\"@example.com>", "\"Fred Blogs\"@example.com"},
              Case{"MAIL from: \"Fred Blogs\"@example.com", "\"Fred Blogs\"@example.com"},
              Case{"MAIL from: <\"Fred Blogs\"@example.com> SIZE=1000",
                   "\"Fred Blogs\"@example.com"},
              Case{"MAIL from: \"Fred Blogs\"@example.com SIZE=1000", "\"Fred Blogs\"@example.com"},
              Case{"MAIL from: <\"fred\"@example.com>", "fred@example.com"},
              Case{"MAIL from: <@relay.example:eggs@example>", "eggs@example"},
              Case{"MAIL from: eggs(comment)@example", "eggs@example"}}) {
            CAPTURE(c.line);
            CHECK(chat.write_line(c.line) == "250 OK\r\n");
            CHECK(chat.session().envelope().mailfrom == c.mailfrom);
            chat.write_line("RSET");
        }
    }

    TEST_CASE("an address smtpd's parser raises on is a syntax error") {
        Chat chat;
        chat.write_line("EHLO example");
        for (auto line : {"MAIL FROM:<", "MAIL FROM:@example", "MAIL FROM:a@[1.2"}) {
            CAPTURE(line);
            CHECK(chat.write_line(line) ==
                  "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n");
        }
        CHECK(chat.write_line("NOOP") == "250 OK\r\n");
    }

    TEST_CASE("RCPT needs MAIL and an address") {
        Chat chat;
        CHECK(chat.write_line("RCPT to eggs@example") == "503 Error: send HELO first\r\n");
        chat.write_line("HELO example");
        CHECK(chat.write_line("RCPT to:spam@example") == "503 Error: need MAIL command\r\n");
        chat.write_line("MAIL From: eggs@example");
        CHECK(chat.write_line("RCPT to eggs@example") == "501 Syntax: RCPT TO: <address>\r\n");
        CHECK(chat.write_line("RCPT to: <eggs@example>") == "250 OK\r\n");
    }

    TEST_CASE("DATA needs a greeting, a recipient and no argument") {
        Chat chat;
        CHECK(chat.write_line("DATA spam") == "503 Error: send HELO first\r\n");
        chat.write_line("HELO example");
        chat.write_line("MAIL From:eggs@example");
        CHECK(chat.write_line("DATA") == "503 Error: need RCPT command\r\n");
        chat.write_line("RCPT To:spam@example");
        CHECK(chat.write_line("DATA spam") == "501 Syntax: DATA\r\n");
        CHECK(chat.session().state() == smtp::Session::State::command);
    }

    TEST_CASE("a message is handed over with its envelope and answered 250 OK") {
        Chat chat;
        chat.write_line("HELO example");
        chat.write_line("MAIL From:eggs@example");
        chat.write_line("RCPT To:spam@example");
        chat.write_line("RCPT To:ham@example");
        chat.write_line("DATA");
        CHECK(chat.session().state() == smtp::Session::State::data);
        CHECK(chat.write_line("data\r\nmore\r\n.") == "250 OK\r\n");
        REQUIRE(chat.messages.size() == 1);
        CHECK(chat.messages[0].envelope.peer == "peer-address");
        CHECK(chat.messages[0].envelope.mailfrom == "eggs@example");
        CHECK(chat.messages[0].envelope.rcpttos ==
              std::vector<std::string>{"spam@example", "ham@example"});
        CHECK(chat.messages[0].data == "data\nmore");
        CHECK(chat.session().state() == smtp::Session::State::command);
        CHECK(chat.session().envelope().mailfrom.empty());
    }

    TEST_CASE("the status process_message returns replaces 250 OK") {
        Chat chat;
        chat.status = "250 Okish";
        chat.write_line("HELO example");
        send_message(chat, "eggs@example", "spam@example", "return status\r\n.");
        CHECK(chat.last() == "250 Okish\r\n");
    }

    TEST_CASE("lines are collected across reads and the message keeps its bytes") {
        Chat chat;
        chat.write_line("HELO example");
        send_message(chat, "eggs@example", "spam@example",
                     "utf8 enriched text: \xc5\xbc\xc5\xba\xc4\x87");
        chat.write_line("and some plain ascii");
        CHECK(chat.write_line(".") == "250 OK\r\n");
        REQUIRE(chat.messages.size() == 1);
        CHECK(chat.messages[0].data ==
              "utf8 enriched text: \xc5\xbc\xc5\xba\xc4\x87\nand some plain ascii");
    }

    TEST_CASE("a leading dot is removed from each line of a message") {
        Chat chat;
        chat.write_line("HELO example");
        send_message(chat, "eggs@example", "spam@example", "..\r\n.");
        send_message(chat, "eggs@example", "spam@example", "..x\r\n.y\r\nz.\r\n.");
        REQUIRE(chat.messages.size() == 2);
        CHECK(chat.messages[0].data == ".");
        CHECK(chat.messages[1].data == ".x\ny\nz.");
    }

    TEST_CASE("RSET forgets the transaction and keeps the greeting") {
        Chat chat;
        chat.write_line("HELO example");
        chat.write_line("MAIL From:eggs@example");
        chat.write_line("RCPT To:spam@example");
        CHECK(chat.write_line("RSET") == "250 OK\r\n");
        send_message(chat, "foo@example", "eggs@example", "data\r\n.");
        REQUIRE(chat.messages.size() == 1);
        CHECK(chat.messages[0].envelope.mailfrom == "foo@example");
        CHECK(chat.messages[0].envelope.rcpttos == std::vector<std::string>{"eggs@example"});
    }

    TEST_CASE("a command line over 512 bytes is too long") {
        Chat chat;
        chat.write_line("HELO example");
        CHECK(chat.write_line("MAIL from: " + std::string(512, 'a') + "@example") ==
              "500 Error: line too long\r\n");
        CHECK(chat.write_line("NOOP " + std::string(600, 'x')) == "500 Error: line too long\r\n");
        CHECK(chat.write_line("NOOP") == "250 OK\r\n");
    }

    TEST_CASE("SIZE lengthens MAIL's line limit by 26 after EHLO") {
        Chat chat;
        chat.write_line("EHLO example");
        auto fill = smtp::command_size_limit - std::string_view("MAIL from:<@example>").size();
        CHECK(chat.write_line("MAIL from:<" + std::string(fill, 'a') + "@example> SIZE=1234") ==
              "250 OK\r\n");
        chat.write_line("RSET");
        CHECK(chat.write_line("MAIL from:<" + std::string(fill + 26, 'a') +
                              "@example> SIZE=1234") == "500 Error: line too long\r\n");
        CHECK(chat.write_line("NOOP " + std::string(520, 'a')) == "500 Error: line too long\r\n");
    }

    TEST_CASE("SMTPUTF8 is announced, accepted and lengthens MAIL's limit by 10 more") {
        Chat chat(with_smtputf8());
        chat.write_line("ehlo example");
        CHECK(chat.sent().find("250-SMTPUTF8\r\n250 HELP\r\n") != std::string::npos);
        auto fill = 512 + 26 + 10 - std::string_view("mail from:<@example>").size();
        for (char c : {'a', 'b'}) {
            CHECK(chat.write_line("MAIL from:<" + std::string(fill, c) + "a@example>") ==
                  "500 Error: line too long\r\n");
            CHECK(chat.write_line("MAIL from:<" + std::string(fill, c) + "@example>") ==
                  "250 OK\r\n");
            chat.write_line("RSET");
        }
        CHECK(chat.write_line("MAIL from: <na\xc3\xafve@example.com> BODY=8BITMIME SMTPUTF8") ==
              "250 OK\r\n");
        CHECK(chat.write_line("RCPT To:sp\xc3\xa4m@exampl\xc3\xa9") == "250 OK\r\n");
        chat.write_line("RSET");
        CHECK(chat.write_line("MAIL from: <a@example> SMTPUTF8=yes") ==
              "501 Error: SMTPUTF8 takes no arguments\r\n");
        CHECK(chat.write_line("MAIL from: <foo@example.com> size=20 body=8bitmime smtputf8") ==
              "250 OK\r\n");
    }

    TEST_CASE("SMTPUTF8 is refused when not enabled") {
        Chat chat;
        chat.write_line("EHLO example");
        CHECK(chat.sent().find("SMTPUTF8") == std::string::npos);
        CHECK(chat.write_line("MAIL from: <naive@example.com> BODY=8BITMIME SMTPUTF8")[0] == '5');
    }

    TEST_CASE("a command line that is not UTF-8 is bad syntax and the session goes on") {
        Chat chat;
        CHECK(chat.write_line("HELO \xff\xfe") == "500 Error: bad syntax\r\n");
        CHECK(chat.write_line("HELO example") == "250 mail.example.org\r\n");
    }

    TEST_CASE("a message over the size limit gets 552 and the session is back in command state") {
        Chat chat(with_limit(32));
        chat.write_line("HELO example");
        send_message(chat, "eggs@example", "spam@example", "data\r\nmore\r\n.");
        CHECK(chat.last() == "250 OK\r\n");
        send_message(chat, "eggs@example", "spam@example",
                     "This message is longer than 32 bytes\r\n.");
        CHECK(chat.last() == "552 Error: Too much mail data\r\n");
        CHECK(chat.messages.size() == 1);
        CHECK(chat.session().state() == smtp::Session::State::command);
        CHECK(chat.write_line("RSET") == "250 OK\r\n");
    }

    TEST_CASE("data beyond the size limit is dropped as it arrives") {
        Chat chat(with_limit(1048));
        chat.write_line("HELO example");
        send_message(chat, "eggs@example", "spam@example", std::string(1000, 'A'));
        for (int i = 0; i < 100; ++i)
            chat.feed(std::string(10000, 'A'));
        CHECK(chat.session().buffered_bytes() <= 1048 + 10000);
        chat.write_line("");
        CHECK(chat.write_line(".") == "552 Error: Too much mail data\r\n");
        CHECK(chat.session().buffered_bytes() == 0);
    }

    TEST_CASE("a command line beyond the limit is not kept either") {
        Chat chat;
        for (int i = 0; i < 100; ++i)
            chat.feed(std::string(10000, 'x'));
        CHECK(chat.session().buffered_bytes() <= 512 + 10000);
        CHECK(chat.write_line("") == "500 Error: line too long\r\n");
    }

    TEST_CASE("the session waits 5 minutes for a command and 3 for message text (RFC 5321)") {
        using std::chrono::minutes;
        Chat chat(with_limit(64));
        CHECK(chat.input_timeout() == minutes(5));
        chat.write_line("HELO example");
        chat.write_line("MAIL From:eggs@example");
        chat.write_line("RCPT To:spam@example");
        CHECK(chat.input_timeout() == minutes(5));
        REQUIRE(chat.write_line("DATA") == "354 End data with <CR><LF>.<CR><LF>\r\n");
        CHECK(chat.input_timeout() == minutes(3));
        CHECK(chat.session().input_timeout() == minutes(3));
        CHECK(chat.write_line("short\r\n.") == "250 OK\r\n");
        CHECK(chat.input_timeout() == minutes(5));
        CHECK(chat.session().input_timeout() == minutes(5));
        send_message(chat, "eggs@example", "spam@example", std::string(100, 'x') + "\r\n.");
        REQUIRE(chat.last() == "552 Error: Too much mail data\r\n");
        CHECK(chat.input_timeout() == minutes(5));
    }

    TEST_CASE("the timeouts come from the options, zero included") {
        using std::chrono::milliseconds;
        for (auto [command, data] : {std::pair{milliseconds(250), milliseconds(100)},
                                     std::pair{milliseconds(0), milliseconds(0)}}) {
            Chat chat(with_timeouts(command, data));
            CHECK(chat.input_timeout() == command);
            chat.write_line("HELO example");
            send_message(chat, "eggs@example", "spam@example", "");
            CHECK(chat.input_timeout() == data);
            chat.write_line(".");
            CHECK(chat.input_timeout() == command);
        }
    }

    TEST_CASE("a silent client gets 421 4.4.2 and the connection closes once it is sent") {
        Chat chat;
        chat.write_line("HELO example");
        chat.feed("NO");
        chat.expire_timeout();
        CHECK(chat.last() == "421 4.4.2 mail.example.org Error: timeout exceeded\r\n");
        CHECK(chat.closing());
        CHECK(chat.session().quitting());
        CHECK(chat.write_line("OP") == "421 4.4.2 mail.example.org Error: timeout exceeded\r\n");
    }

    TEST_CASE("a timeout in the middle of a message delivers nothing") {
        Chat chat;
        chat.write_line("HELO example");
        send_message(chat, "eggs@example", "spam@example", "Subject: cut short\r\n\r\nhalf");
        CHECK(chat.session().buffered_bytes() > 0);
        chat.expire_timeout();
        CHECK(chat.last() == "421 4.4.2 mail.example.org Error: timeout exceeded\r\n");
        CHECK(chat.closing());
        CHECK(chat.session().buffered_bytes() == 0);
        chat.write_line(".");
        CHECK(chat.messages.empty());
        CHECK(chat.last() == "421 4.4.2 mail.example.org Error: timeout exceeded\r\n");
    }

    TEST_CASE("a timeout after QUIT adds nothing to the 221") {
        Chat chat;
        chat.write_line("QUIT");
        auto sent = chat.sent();
        chat.expire_timeout();
        CHECK(chat.sent() == sent);
    }

    TEST_CASE("remove_dot_stuffing splits at CRLF only") {
        std::string s = ".a\r\n..b\r\nc\rd\n.e\r\n.";
        smtp::remove_dot_stuffing(s);
        CHECK(s == "a\n.b\nc\rd\n.e\n");
    }

    TEST_CASE("get_address returns the parameters after the address") {
        auto p = smtp::get_address("<a@b.example>   SIZE=10 BODY=8BITMIME");
        CHECK(p.address == "a@b.example");
        CHECK(p.rest == "SIZE=10 BODY=8BITMIME");
        auto q = smtp::get_address("a b@c");
        CHECK(q.address == "\"a b\"@c");
        CHECK(smtp::get_address("").address.empty());
        CHECK_THROWS_AS(smtp::get_address("<"), smtp::AddressError);
    }

    TEST_CASE("an mbox entry has a From line, X-Peer after the headers and escaped From lines") {
        std::string entry =
            smtp::format_mbox_entry("eggs@example", "127.0.0.1", "Subject: x\n\nFrom me\n>From", 0);
        CHECK(entry ==
              "From eggs@example Thu Jan  1 00:00:00 1970\nSubject: x\nX-Peer: 127.0.0.1\n\n"
              ">From me\n>From\n\n");
        CHECK(smtp::format_mbox_entry("<>", "::1", "Subject: y", 0) ==
              "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: y\nX-Peer: ::1\n\n");
    }

    TEST_CASE("STARTTLS is advertised, answered with 220, and resets the session (RFC 3207)") {
        Chat chat(with_starttls());
        auto before = chat.sent().size();
        chat.write_line("EHLO example");
        CHECK(chat.sent().substr(before) ==
              "250-mail.example.org\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-STARTTLS\r\n"
              "250 HELP\r\n");
        REQUIRE(chat.write_line("MAIL From:<eggs@example>") == "250 OK\r\n");
        CHECK(chat.write_line("STARTTLS") == "220 Ready to start TLS\r\n");
        CHECK(chat.tls_starts() == 1);
        CHECK(chat.session().tls());
        // Everything learnt in clear is forgotten: greeting, extensions, envelope.
        CHECK(chat.session().seen_greeting().empty());
        CHECK_FALSE(chat.session().extended_smtp());
        CHECK(chat.session().envelope().mailfrom.empty());
        CHECK(chat.write_line("MAIL From:<eggs@example>") == "503 Error: send HELO first\r\n");
        before = chat.sent().size();
        chat.write_line("EHLO example");
        CHECK(chat.sent().substr(before) ==
              "250-mail.example.org\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250 HELP\r\n");
        CHECK(chat.write_line("STARTTLS") == "503 Error: TLS already active\r\n");
        CHECK(chat.tls_starts() == 1);
        send_message(chat, "<eggs@example>", "<ham@example>", "Subject: over TLS\r\n\r\nhi\r\n.");
        CHECK(chat.last() == "250 OK\r\n");
        REQUIRE(chat.messages.size() == 1);
        CHECK(chat.messages[0].envelope.mailfrom == "eggs@example");
    }

    TEST_CASE("STARTTLS with an argument, or not offered, is refused and starts nothing") {
        Chat offering(with_starttls());
        CHECK(offering.write_line("STARTTLS now") ==
              "501 Syntax error (no parameters allowed)\r\n");
        CHECK(offering.tls_starts() == 0);
        CHECK_FALSE(offering.session().tls());
        Chat plain;
        CHECK(plain.write_line("STARTTLS") == "500 Error: command \"STARTTLS\" not recognized\r\n");
        CHECK(plain.tls_starts() == 0);
        auto before = plain.sent().size();
        plain.write_line("EHLO example");
        CHECK(plain.sent().substr(before).find("STARTTLS") == std::string::npos);
    }

    TEST_CASE("Mailbox appends entries and reports a full disk without keeping a partial entry") {
        ScratchDir dir;
        const std::string path = dir.path + "/mail.mbox";
        {
            smtp::Mailbox box(path);
            CHECK(box.journal_path() == path + ".journal");
            CHECK(box.recovery_report().empty());
            CHECK(!box.append("From a Thu Jan  1 00:00:00 1970\nx\n\n"));
            CHECK(!box.append("From b Thu Jan  1 00:00:00 1970\ny\n\n"));
        }
        CHECK(read_file(path) ==
              "From a Thu Jan  1 00:00:00 1970\nx\n\nFrom b Thu Jan  1 00:00:00 1970\ny\n\n");
        smtp::Mailbox again(path);
        CHECK(again.recovery_report().empty());

        smtp::Mailbox full("/dev/full");
        CHECK(full.journal_path().empty());  // not a regular file: no journal
        CHECK(full.append("From a\n\n") == std::errc::no_space_on_device);
        smtp::Mailbox null("/dev/null");
        CHECK(!null.append("From a\n\n"));
    }

    // -- Crash recovery (mbox.hpp): the files a SIGKILL leaves at each step of
    // an append, reopened as a restarted server would.

    TEST_CASE("a tail torn at any offset of an entry is cut at start-up, and said so") {
        ScratchDir dir;
        const std::string path = dir.path + "/mail.mbox";
        const std::string base = committed_base(path);
        const std::string entry = sample_entry();
        for (std::size_t k = 0; k <= entry.size(); ++k) {
            CAPTURE(k);
            {
                smtp::Mailbox box(path);
                REQUIRE(box.recovery_report().empty());
                REQUIRE(!box.append(entry, smtp::Mailbox::Stop::after_write));
            }
            REQUIRE(::truncate(path.c_str(), static_cast<off_t>(base.size() + k)) == 0);
            smtp::Mailbox restarted(path);
            CHECK(read_file(path) == base);
            const std::string& report = restarted.recovery_report();
            if (k == 0) {
                CHECK(report.empty());  // the intent was written, nothing else
            } else if (k < entry.size()) {
                CHECK(report == "mbox " + path + ": cut a torn entry (" + std::to_string(k) +
                                    " of " + std::to_string(entry.size()) + " bytes) at offset " +
                                    std::to_string(base.size()) +
                                    ", left by an append that was interrupted");
            } else {
                CHECK(report == "mbox " + path + ": cut an unacknowledged entry of " +
                                    std::to_string(entry.size()) + " bytes at offset " +
                                    std::to_string(base.size()) +
                                    ", left by an append that was interrupted");
            }
        }
        // The mailbox goes on as if the interrupted appends never began.
        smtp::Mailbox box(path);
        REQUIRE(!box.append(entry));
        CHECK(read_file(path) == base + entry);
    }

    TEST_CASE("a kill before the commit loses the entry; after it, the entry stays") {
        using Stop = smtp::Mailbox::Stop;
        ScratchDir dir;
        const std::string path = dir.path + "/mail.mbox";
        const std::string base = committed_base(path);
        const std::string entry = sample_entry();
        for (Stop stop : {Stop::after_intent, Stop::after_write, Stop::after_sync}) {
            CAPTURE(static_cast<int>(stop));
            {
                smtp::Mailbox box(path);
                REQUIRE(!box.append(entry, stop));
            }
            smtp::Mailbox restarted(path);
            CHECK(read_file(path) == base);
            CHECK(restarted.recovery_report().empty() == (stop == Stop::after_intent));
        }
        {
            smtp::Mailbox box(path);
            REQUIRE(!box.append(entry, Stop::after_commit));
        }
        smtp::Mailbox restarted(path);
        CHECK(read_file(path) == base + entry);
        CHECK(restarted.recovery_report().empty());
    }

    TEST_CASE("what another program appended is never cut") {
        ScratchDir dir;
        const std::string path = dir.path + "/mail.mbox";
        const std::string base = committed_base(path);
        const std::string entry = sample_entry();
        const std::string theirs =
            "\nFrom someone-else Fri Jan  2 00:00:00 1970\nSubject: x\n\nhi\n";
        // After a committed entry: nothing to recover at all.
        append_file(path, theirs);
        {
            smtp::Mailbox box(path);
            CHECK(box.recovery_report().empty());
        }
        CHECK(read_file(path) == base + theirs);
        // After an interrupted one, torn or whole: left in place, and said so.
        for (std::size_t keep : {entry.size() / 2, entry.size()}) {
            CAPTURE(keep);
            const std::string before = read_file(path);
            {
                smtp::Mailbox box(path);
                REQUIRE(!box.append(entry, smtp::Mailbox::Stop::after_write));
            }
            REQUIRE(::truncate(path.c_str(), static_cast<off_t>(before.size() + keep)) == 0);
            append_file(path, theirs);
            smtp::Mailbox restarted(path);
            CHECK(read_file(path) == before + entry.substr(0, keep) + theirs);
            // The separator before their From line counts as ours when ours is torn.
            std::size_t followed = keep < entry.size() ? theirs.size() - 1 : theirs.size();
            CHECK(restarted.recovery_report().ends_with(
                " is followed by " + std::to_string(followed) +
                " bytes another program appended; left in place"));
        }
    }

    TEST_CASE("a mailbox another program rewrote since the interruption is left alone") {
        ScratchDir dir;
        const std::string path = dir.path + "/mail.mbox";
        committed_base(path);
        {
            smtp::Mailbox box(path);
            REQUIRE(!box.append(sample_entry(), smtp::Mailbox::Stop::after_write));
        }
        // A mail reader expunged the first message and rewrote the file.
        const std::string rewritten = "From b Thu Jan  1 00:00:00 1970\ny\n\n" + sample_entry();
        write_file(path, rewritten);
        smtp::Mailbox restarted(path);
        CHECK(read_file(path) == rewritten);
        CHECK(restarted.recovery_report().find("changed by another program") != std::string::npos);
    }

    TEST_CASE("a journal record torn by a power cut is ignored for the slot before it") {
        ScratchDir dir;
        const std::string path = dir.path + "/mail.mbox";
        const std::string base = committed_base(path);  // two appends: records 1 to 4
        const std::string entry = sample_entry();
        {
            smtp::Mailbox box(path);
            REQUIRE(!box.append(entry));  // intent 5 in slot 1, commit 6 in slot 0
        }
        // The commit record half written: the intent before it is the newest
        // whole record, so the entry was never acknowledged and is cut.
        int fd = ::open((path + ".journal").c_str(), O_WRONLY);
        REQUIRE(fd >= 0);
        REQUIRE(::pwrite(fd, "torn", 4, 60) == 4);
        ::close(fd);
        smtp::Mailbox restarted(path);
        CHECK(read_file(path) == base);
        CHECK(restarted.recovery_report().find("cut an unacknowledged entry") != std::string::npos);
    }

    TEST_CASE("a mailbox locked by another program is not written to") {
        ScratchDir dir;
        const std::string path = dir.path + "/mail.mbox";
        const std::string base = committed_base(path);
        smtp::Mailbox box(path);
        // An open file description lock conflicts with the mailbox's fcntl
        // lock even within this process, as another program's lock would.
        int fd = ::open(path.c_str(), O_RDWR);
        REQUIRE(fd >= 0);
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        REQUIRE(::fcntl(fd, F_OFD_SETLK, &fl) == 0);
        CHECK(box.append(sample_entry()) == std::errc::resource_unavailable_try_again);
        CHECK_THROWS_AS(smtp::Mailbox{path}, std::system_error);
        ::close(fd);
        CHECK(!box.append(sample_entry()));
        CHECK(read_file(path) == base + sample_entry());
    }
}
