// AsyncChat: asynchat's async_chat, a Dispatcher that splits its input into
// records at a terminator and queues its output.
//
// Input: each read is scanned for the current terminator; the data of a
// record goes to collect_incoming_data() and the end of a record calls
// found_terminator(). Every record complete in one read is delivered during
// that read, and a terminator changed inside found_terminator() applies to the
// rest of the buffer at once (so a protocol can switch between lines and
// byte counts, as SMTP's DATA or Redis' bulk strings do).
//
// Output: push() queues bytes and push_with_producer() queues a Producer;
// both are written in order, gathered into one writev() per write event.
// close_when_done() closes the channel once everything queued before it is
// written.
//
// Example: a line echo server's channel.
//
//     class EchoLines : public asyncore::AsyncChat {
//       public:
//         explicit EchoLines(asyncore::Socket s) : AsyncChat(std::move(s)) {
//             set_terminator("\r\n");
//         }
//         void found_record(std::string_view line) override {
//             push(std::string(line) + "\r\n");
//         }
//     };
//
// TLS: start_tls() runs the channel over TLS from a point in the
// conversation (STARTTLS), after the plaintext queued before it is written;
// records and pushes carry plaintext on both sides of that point.
//
// Threads: like every Dispatcher, an AsyncChat belongs to its map's loop
// thread. Callbacks run on that thread, from handle_read() (input) or from
// push()/initiate_send()/handle_write() (output).
#pragma once

#include <concepts>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <asyncore/dispatcher.hpp>
#include <asyncore/producer.hpp>
#include <asyncore/ring_queue.hpp>

namespace asyncore {

namespace detail {
/// An integer that reads as a byte count: not bool, not a character type.
template <class T>
concept ByteCount = std::integral<T> && !std::same_as<T, bool> && !std::same_as<T, char> &&
                    !std::same_as<T, wchar_t> && !std::same_as<T, char8_t> &&
                    !std::same_as<T, char16_t> && !std::same_as<T, char32_t>;
}  // namespace detail

/// What ends a record: a string, one of several strings, a byte count, or
/// nothing (every byte goes to collect_incoming_data()). Converts implicitly
/// from a string, an integer or std::nullopt, so `set_terminator("\r\n")`,
/// `set_terminator(6)` and `set_terminator(std::nullopt)` read as in Python.
class Terminator {
  public:
    enum class Kind {
        none,    ///< no terminator: all data is collected, found_terminator() never runs
        count,   ///< a number of bytes; counts down across reads
        string,  ///< one string of any length
        any_of,  ///< several strings; the earliest in the stream wins
    };

    /// No terminator (asynchat's None).
    Terminator() noexcept = default;
    Terminator(std::nullopt_t) noexcept {}
    /// A string terminator. An empty string behaves as none, as in asynchat.
    Terminator(std::string s) : kind_(Kind::string), string_(std::move(s)) {}
    Terminator(std::string_view s) : Terminator(std::string(s)) {}
    Terminator(const char* s) : Terminator(std::string(s)) {}
    /// A one-character string terminator: `set_terminator('\n')` means a
    /// newline, not a count of 10.
    Terminator(char c) : Terminator(std::string(1, c)) {}
    Terminator(bool) = delete;
    /// A byte count. Throws std::invalid_argument if negative. A count of 0
    /// behaves as none (a count reaches 0 when its record is complete).
    template <detail::ByteCount T>
    Terminator(T count) : kind_(Kind::count) {
        if constexpr (std::is_signed_v<T>) {
            if (count < 0) throw std::invalid_argument("terminator: the byte count must be >= 0");
        }
        count_ = static_cast<std::size_t>(count);
    }
    /// Several string terminators (python-astm): a record ends at the
    /// terminator that starts earliest in the stream; at the same position the
    /// one listed first wins. The result does not depend on how the stream
    /// was split into reads. Throws std::invalid_argument for an empty list
    /// or an empty string in it.
    static Terminator any_of(std::vector<std::string> terminators);

    Kind kind() const noexcept { return kind_; }
    /// The bytes still expected for a count terminator; 0 otherwise.
    std::size_t count() const noexcept { return kind_ == Kind::count ? count_ : 0; }
    /// The string terminators: one for `string`, several for `any_of`, none
    /// otherwise.
    std::span<const std::string> strings() const noexcept;
    /// True when data is collected without ever finding a terminator: kind
    /// none, a count of 0, or an empty string.
    bool collects_all() const noexcept;

    bool operator==(const Terminator&) const = default;

  private:
    friend class AsyncChat;
    Kind kind_ = Kind::none;
    std::size_t count_ = 0;
    std::string string_;
    std::vector<std::string> any_of_;
};

/// asynchat's find_prefix_at_end: the length of the longest proper prefix of
/// `needle` that `haystack` ends with (0 if none). find_prefix_at_end("qwerty\r",
/// "\r\n") is 1. Assumes `haystack` does not contain `needle` at its end.
std::size_t find_prefix_at_end(std::string_view haystack, std::string_view needle) noexcept;

class AsyncChat : public Dispatcher {
  public:
    static constexpr std::size_t default_buffer_size = 65536;
    static constexpr std::size_t default_max_input_buffer = 65536;
    static constexpr std::size_t default_output_low = 256 * 1024;
    static constexpr std::size_t default_output_high = 1024 * 1024;

    /// A channel without a socket yet (create_socket() and connect() follow).
    explicit AsyncChat(ChannelMap& map = socket_map());
    /// Wraps a connected socket, typically one from handle_accepted().
    explicit AsyncChat(Socket sock, ChannelMap& map = socket_map());
    ~AsyncChat() override;

    // -- Input ------------------------------------------------------------------

    /// Sets what ends the next record; takes effect for the bytes not yet
    /// scanned, including the rest of the current read when called from
    /// found_terminator(). Throws std::invalid_argument for a negative count
    /// (from Terminator's constructor).
    void set_terminator(Terminator terminator);
    /// The current terminator; a count terminator shows the bytes still expected.
    const Terminator& get_terminator() const noexcept { return terminator_; }
    /// With keep_terminator on, the terminator's bytes are passed to
    /// collect_incoming_data() with the record's data, as its end. Default off.
    void set_keep_terminator(bool on) noexcept { keep_terminator_ = on; }
    bool keep_terminator() const noexcept { return keep_terminator_; }
    /// The string terminator that ended the last record (useful with any_of);
    /// empty before the first one and after a count terminator.
    std::string_view last_terminator() const noexcept { return last_terminator_; }

    /// Receives the data of the current record, possibly in several pieces
    /// (one per read at most), never an empty piece. `data` points into the
    /// channel's receive buffer and is valid only during the call.
    ///
    /// Default: keeps the data for incoming() / get_data() / found_record(),
    /// without copying while the record lies within one read.
    virtual void collect_incoming_data(std::string_view data);
    /// Called at the end of each record, after its data was collected. An
    /// empty record calls it with no collect_incoming_data() call.
    ///
    /// Default: calls found_record() with the collected record, then forgets it.
    virtual void found_terminator();
    /// The zero-copy record hook used by the default collect_incoming_data()
    /// and found_terminator(): `record` is the whole record (without the
    /// terminator unless keep_terminator()), valid only during the call. When
    /// the record arrived in one read it points straight into the receive
    /// buffer: a line protocol allocates nothing per record.
    ///
    /// Default: throws std::logic_error (asynchat's NotImplementedError): a
    /// subclass overrides found_terminator() or found_record().
    virtual void found_record(std::string_view record);

    /// The data collected so far by the default collect_incoming_data(). Valid
    /// until the next read or collect.
    std::string_view incoming();
    /// Takes the collected data, leaving it empty (asynchat's _get_data).
    std::string get_data();

    /// Processes `data` as if it had just been received: the seam that tests
    /// and layers which receive data themselves (a TLS layer) use. Views
    /// handed to callbacks point into `data` when possible. Exceptions from
    /// the callbacks, and the limit_exceeded error, propagate to the caller.
    void feed(std::string_view data);

    /// Bytes asked for per recv() (asynchat's ac_in_buffer_size). Default 65536.
    std::size_t ac_in_buffer_size() const noexcept { return ac_in_buffer_size_; }
    /// Throws std::invalid_argument if `n` is 0.
    void set_ac_in_buffer_size(std::size_t n);

    /// The largest record a string terminator may delimit, in bytes of data
    /// (the terminator not counted). Default 64 KiB; 0 means no bound. A
    /// record that grows past it, in one read or across many, is rejected:
    /// the read throws std::system_error(asyncore::errc::limit_exceeded),
    /// which reaches handle_error() (by default: logs and closes this channel
    /// only); the record's collected data and the rest of that read are
    /// dropped. Count and none terminators are not bounded: their size is the
    /// protocol's choice.
    std::size_t max_input_buffer() const noexcept { return max_input_buffer_; }
    void set_max_input_buffer(std::size_t n) noexcept { max_input_buffer_ = n; }

    // -- Output -----------------------------------------------------------------

    /// Queues `data` behind everything already queued and tries to send at
    /// once (unless the socket is known to be full). Nothing is lost: what
    /// the socket does not take stays queued. An rvalue string is queued
    /// without a copy; small pushes are coalesced into one buffer.
    ///
    /// One exception to "at once", for pipelined requests: a push from
    /// found_terminator() while the same read still holds more records waits
    /// for the last of them (or the end of that read's scan), so that the
    /// replies to one read leave in one writev() instead of one send() each.
    /// The bytes and their order are the same; a close(), discard_buffers()
    /// or exception later in that scan first sends what was pushed before
    /// it, as an immediate send would have.
    void push(std::string_view data);
    void push(const char* data) { push(std::string_view(data)); }
    void push(std::string&& data);
    void push(std::span<const std::byte> data);
    void push(std::span<const unsigned char> data);
    /// Queues a producer; its chunks are sent in its place in the queue.
    void push_with_producer(std::unique_ptr<Producer> producer);
    /// asynchat also accepts a plain bytes object as a producer: the same as
    /// push(std::move(data)).
    void push_with_producer(std::string data) { push(std::move(data)); }

    /// Closes the channel (handle_close()) once every byte queued before this
    /// call has been written, also to a peer that half-closed meanwhile (see
    /// handle_close()). Data pushed afterwards is never sent.
    void close_when_done() override;
    /// Writes what it can from the front of the queue: one writev() of up to
    /// IOV_MAX buffers and ac_out_buffer_size() bytes, pulling producers as
    /// they reach the front. Does nothing while not connected.
    void initiate_send();
    /// Drops all buffered input and every queued output item, producers and
    /// a pending close_when_done() or start_tls() included (asynchat:
    /// "emergencies only").
    void discard_buffers();

    /// Bytes sent per writev() at most (asynchat's ac_out_buffer_size).
    /// Default 65536.
    std::size_t ac_out_buffer_size() const noexcept { return ac_out_buffer_size_; }
    /// Throws std::invalid_argument if `n` is 0.
    void set_ac_out_buffer_size(std::size_t n);

    /// Bytes queued and not yet sent (producers' unpulled data not counted).
    std::size_t output_queued() const noexcept { return out_bytes_; }
    /// Items (buffers, producers, a close_when_done mark) in the output queue.
    std::size_t output_items() const noexcept { return out_.size(); }

    /// Output watermarks. When output_queued() rises above `high`,
    /// output_paused() becomes true and on_output_high() runs; when it falls
    /// back to `low` or below, output_paused() becomes false and
    /// on_output_drained() runs. Each fires once per crossing. Defaults 256
    /// KiB and 1 MiB. Throws std::invalid_argument if low > high.
    void set_output_watermarks(std::size_t low, std::size_t high);
    std::size_t output_low_watermark() const noexcept { return out_low_; }
    std::size_t output_high_watermark() const noexcept { return out_high_; }
    bool output_paused() const noexcept { return out_paused_; }

    /// Hook: the output queue rose above the high watermark. Called from
    /// push() or initiate_send() on the caller's stack. Typical use: stop
    /// producing, or stop reading from a peer that does not read its replies
    /// (`readable()` returning `!output_paused()`). Default: nothing.
    virtual void on_output_high();
    /// Hook: the output queue fell to the low watermark after on_output_high().
    /// Called from initiate_send() (usually in handle_write()) or
    /// discard_buffers(). Default: nothing.
    virtual void on_output_drained();

    // -- TLS --------------------------------------------------------------------

    /// Dispatcher::start_tls() for a chat channel, also mid-connection
    /// (STARTTLS). Same arguments and errors; also throws std::logic_error
    /// while an earlier call waits to start. Hides Dispatcher::start_tls():
    /// call it on the AsyncChat, not through a Dispatcher reference.
    ///
    /// Output: TLS starts once every byte queued before this call has been
    /// written in clear (the "220 go ahead" just pushed), as close_when_done()
    /// closes; at once when nothing is queued. Bytes pushed afterwards go out
    /// encrypted, after the handshake. So for TLS from the first byte, call it
    /// before the first push() (right after connect() or accept). If TLS
    /// fails to start when the output is written, the error reaches the
    /// caller of push() or initiate_send(), or handle_error().
    ///
    /// Input, the STARTTLS injection defence (RFC 3207 section 5,
    /// CVE-2011-0411): call this from found_terminator() (or found_record())
    /// of the record that asks for TLS. Plaintext received but not delivered
    /// yet is then discarded, never delivered as if it had come over TLS: the
    /// rest of the current read after that record, bytes held for a partial
    /// terminator, the data the default collect_incoming_data() kept of a
    /// partial record (a subclass that collects data itself must drop its own),
    /// and plaintext that arrives while TLS waits for the output to drain. Only
    /// a peer pipelining past STARTTLS or an attacker in the middle sends such
    /// bytes; plaintext_discarded() counts them so a protocol can log or drop
    /// the peer. Plaintext still in the kernel when TLS starts is read by the
    /// TLS layer and fails the handshake (handle_error() with a TlsError).
    void start_tls(const TlsContext& ctx, bool server_side, std::string server_hostname = {});
    /// True from a start_tls() that waits for queued output until TLS starts
    /// (tls_active() then), close() or discard_buffers().
    bool tls_pending() const noexcept { return pending_tls_ != nullptr; }
    /// Plaintext bytes start_tls() discarded on this channel so far.
    std::size_t plaintext_discarded() const noexcept { return plaintext_discarded_; }

    // -- Dispatcher hooks -------------------------------------------------------

    /// One recv() of ac_in_buffer_size() bytes, then the records in it. EAGAIN
    /// is silent; EOF and disconnects become handle_close().
    void handle_read() override;
    /// Clears the "socket full" state and calls initiate_send().
    void handle_write() override;
    /// asynchat's: close(). Except when close_when_done() waits behind
    /// queued output: then the peer's EOF (it half-closed, and still reads)
    /// only stops reading (stop_reading()), and the channel closes once the
    /// output is written; a peer that is gone fails the next send, and the
    /// channel closes then. (The first call of any cause does this: after a
    /// default handle_idle_timeout(), the channel closes at the next one.)
    void handle_close() override;
    /// Closes the channel; records of the current read not yet delivered are
    /// dropped (no callback runs for a closed channel).
    void close() override;
    /// asynchat's: always true.
    bool readable() override;
    /// asynchat's: output queued, or not connected yet.
    bool writable() override;

  private:
    struct OutItem {
        std::string data;
        std::unique_ptr<Producer> producer;
        bool close = false;      ///< close_when_done()'s mark
        bool start_tls = false;  ///< start_tls()'s mark
        bool mark() const noexcept { return close || start_tls; }
    };
    struct PendingTls;
    struct Match {
        bool found;
        std::size_t begin;  ///< the terminator's start, or the first byte to keep
        std::size_t end;    ///< one past the terminator
    };

    void process(std::string_view buf);
    std::size_t step_count(std::string_view buf, std::size_t pos, std::size_t epoch);
    bool step_strings(std::string_view buf, std::size_t& pos, std::size_t epoch);
    Match scan_strings(std::string_view buf, std::size_t pos);
    std::size_t find_cached(std::string_view buf, std::size_t pos, std::size_t index);
    void deliver(std::string_view data, std::size_t counted);
    void end_record(std::size_t rest);
    void check_tls_arguments(const TlsContext& ctx, bool server_side,
                             const std::string& server_hostname) const;
    void discard_unread_input();
    void discard_read();
    void start_pending_tls();
    void settle_input();
    [[noreturn]] void reject_record();

    bool can_send_directly() const noexcept;
    /// A push now would be followed by more records of the same read.
    bool defer_send() const noexcept { return ending_record_ && scan_rest_ > 0; }
    void write_deferred();
    void flush_deferred();
    void flush_deferred_quietly() noexcept;
    bool send_directly(std::string_view data, std::size_t& sent);
    void enqueue(std::string_view data);
    void after_enqueue(bool tried);
    void defer_after_enqueue();
    /// A close_when_done() mark is in the output queue.
    bool close_queued() const noexcept;
    void pull_producers();
    std::size_t write_queue();
    std::size_t finish_send(long n, int err, std::size_t bytes);
    void consume(std::size_t n);
    void check_high();
    void check_drained();

    Terminator terminator_;
    bool keep_terminator_ = false;
    std::string last_terminator_;
    std::string held_;                ///< the end of the last read: a partial terminator
    std::string incoming_;            ///< collected data copied out of a receive buffer
    std::string_view pending_;        ///< collected data still in the receive buffer
    std::size_t record_len_ = 0;      ///< data bytes of the current record so far
    std::size_t input_epoch_ = 0;     ///< bumped by close() and discard_buffers(): stop scanning
    std::size_t terminator_gen_ = 0;  ///< bumped by set_terminator()
    std::vector<std::size_t> next_match_;  ///< any_of: cached find() per terminator...
    std::size_t scan_id_ = 0;              ///< bumped for each buffer scanned
    std::size_t match_scan_ = 0;           ///< ...valid for this scan...
    std::size_t match_gen_ = 0;            ///< ...and this terminator
    std::size_t scan_rest_ = 0;   ///< bytes of the current read after the record ending now
    bool ending_record_ = false;  ///< found_terminator() is running
    bool send_deferred_ = false;  ///< pushes wait for the end of this read's records
    std::size_t ac_in_buffer_size_ = default_buffer_size;
    std::size_t max_input_buffer_ = default_max_input_buffer;

    RingQueue<OutItem> out_;
    std::size_t out_offset_ = 0;  ///< bytes of out_.front().data already sent
    std::size_t out_bytes_ = 0;   ///< unsent bytes in out_
    std::size_t ac_out_buffer_size_ = default_buffer_size;
    std::size_t out_low_ = default_output_low;
    std::size_t out_high_ = default_output_high;
    bool out_paused_ = false;
    bool write_blocked_ = false;  ///< the socket took less than offered; wait for writability

    std::unique_ptr<PendingTls> pending_tls_;  ///< start_tls() waiting for queued output
    std::size_t plaintext_discarded_ = 0;
};

}  // namespace asyncore
