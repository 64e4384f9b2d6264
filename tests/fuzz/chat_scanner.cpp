// Property: AsyncChat's record scanning does not depend on how the stream is
// split into reads, and agrees with a reference model written as plain loops
// over the whole stream.
//
// The input chooses a program of terminators (none, a byte count, a string of
// any length, Terminator::any_of), each with or without keep_terminator; the
// channel starts with the first and found_terminator() moves to the next, in
// a cycle. It also chooses max_input_buffer (0 or small), whether records
// arrive through collect_incoming_data() + found_terminator() or through the
// default collector and found_record(), and how the stream is split. Every
// split must give the model's records (data and last_terminator()), the
// model's incomplete record at the end, and limit_exceeded exactly when the
// model says a record's data outgrew max_input_buffer.

#include <asyncore/async_chat.hpp>
#include <asyncore/error.hpp>
#include <asyncore/loop.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "fuzz/split.hpp"

namespace {

using asyncore::Terminator;

// One step of the terminator program.
struct Step {
    enum class Kind { none, count, string, any_of, unchanged };
    Kind kind = Kind::none;
    std::size_t count = 0;
    std::vector<std::string> strings;  ///< one for `string` (maybe empty), 2-3 for `any_of`
    bool keep = false;
};

using Program = std::vector<Step>;

struct Record {
    std::string data;
    std::string terminator;  ///< last_terminator() when the record ended
    bool operator==(const Record&) const = default;
};

// What a channel delivered from a stream.
struct Outcome {
    std::vector<Record> records;
    std::string partial;  ///< the data of the record not complete at the end
    bool limit_exceeded = false;
};

// -- The reference model ------------------------------------------------------

// The terminator in force, as the model sees it.
struct ModelTerminator {
    Step::Kind kind = Step::Kind::none;
    std::size_t count = 0;
    std::vector<std::string> strings;
    bool keep = false;

    void apply(const Step& s) {
        keep = s.keep;
        if (s.kind == Step::Kind::unchanged) return;
        kind = s.kind;
        count = s.count;
        strings = s.strings;
    }
    // No terminator, a count of 0 or an empty string: everything is data.
    bool collects_all() const {
        return kind == Step::Kind::none || (kind == Step::Kind::count && count == 0) ||
               (kind == Step::Kind::string && strings[0].empty());
    }
};

// The terminator that ends the record starting at `from`: the earliest start
// in the stream, and the one listed first among those starting there. While
// one that would win is cut off by the end of the stream, nothing is decided:
// `undecided` is where it starts.
struct Scan {
    std::optional<std::size_t> start;
    std::size_t which = 0;
    std::size_t undecided = 0;
};

Scan scan_strings(std::string_view s, std::size_t from, const std::vector<std::string>& terms) {
    for (std::size_t at = from; at < s.size(); ++at) {
        for (std::size_t i = 0; i < terms.size(); ++i) {
            std::string_view t = terms[i];
            std::string_view rest = s.substr(at);
            if (rest.starts_with(t)) return {at, i, 0};
            if (t.starts_with(rest)) return {std::nullopt, 0, at};
        }
    }
    return {std::nullopt, 0, s.size()};
}

Outcome model(const Program& program, std::string_view s, std::size_t max_input) {
    Outcome out;
    ModelTerminator term;
    std::size_t step = 0;
    term.apply(program[0]);
    std::size_t pos = 0;
    for (;;) {
        std::string terminator;
        std::size_t data_end = 0, next = 0;
        if (term.collects_all()) {
            out.partial = s.substr(pos);
            return out;
        }
        if (term.kind == Step::Kind::count) {
            if (s.size() - pos < term.count) {
                out.partial = s.substr(pos);
                return out;
            }
            data_end = next = pos + term.count;
            term.count = 0;
        } else {
            Scan scan = scan_strings(s, pos, term.strings);
            std::size_t data = (scan.start ? *scan.start : scan.undecided) - pos;
            if (max_input > 0 && data > max_input) {
                out.limit_exceeded = true;
                return out;
            }
            if (!scan.start) {
                out.partial = s.substr(pos, data);
                return out;
            }
            terminator = term.strings[scan.which];
            next = *scan.start + terminator.size();
            data_end = term.keep ? next : *scan.start;
        }
        out.records.push_back({std::string(s.substr(pos, data_end - pos)), terminator});
        pos = next;
        term.apply(program[++step % program.size()]);
    }
}

// -- The channel under test ---------------------------------------------------------

Terminator to_terminator(const Step& s) {
    switch (s.kind) {
        case Step::Kind::count:
            return Terminator(s.count);
        case Step::Kind::string:
            return Terminator(s.strings[0]);
        case Step::Kind::any_of:
            return Terminator::any_of(s.strings);
        case Step::Kind::none:
        case Step::Kind::unchanged:
            break;
    }
    return Terminator(std::nullopt);
}

class ProgramChat : public asyncore::AsyncChat {
  public:
    ProgramChat(asyncore::ChannelMap& map, const Program& program, bool use_found_record)
        : AsyncChat(map), program_(program), use_found_record_(use_found_record) {
        apply(program_[0]);
    }

    void collect_incoming_data(std::string_view data) override {
        if (data.empty()) fail("collect_incoming_data() was given an empty piece");
        if (use_found_record_) return AsyncChat::collect_incoming_data(data);
        collected_.append(data);
    }
    void found_terminator() override {
        if (use_found_record_) {
            AsyncChat::found_terminator();
        } else {
            out.records.push_back({std::move(collected_), std::string(last_terminator())});
            collected_.clear();
        }
        apply(program_[++step_ % program_.size()]);
    }
    void found_record(std::string_view record) override {
        out.records.push_back({std::string(record), std::string(last_terminator())});
    }

    // The data of the incomplete record, wherever this mode keeps it.
    std::string partial() { return use_found_record_ ? std::string(incoming()) : collected_; }

    Outcome out;

  private:
    void apply(const Step& s) {
        set_keep_terminator(s.keep);
        if (s.kind != Step::Kind::unchanged) set_terminator(to_terminator(s));
    }
    [[noreturn]] static void fail(const char* what) {
        std::fprintf(stderr, "chat_scanner: %s\n", what);
        std::abort();
    }

    const Program& program_;
    bool use_found_record_;
    std::size_t step_ = 0;
    std::string collected_;
};

Outcome run_split(const Program& program, bool use_found_record, std::size_t max_input,
                  const std::vector<std::string_view>& chunks) {
    static asyncore::ChannelMap map;
    ProgramChat chat(map, program, use_found_record);
    chat.set_max_input_buffer(max_input);
    for (std::string_view chunk : chunks) {
        try {
            chat.feed(chunk);
        } catch (const std::system_error& e) {
            if (e.code() != asyncore::errc::limit_exceeded) throw;
            chat.out.limit_exceeded = true;
            return std::move(chat.out);
        }
    }
    chat.out.partial = chat.partial();
    return std::move(chat.out);
}

// -- Input decoding -------------------------------------------------------------------

std::string small_string(FuzzedDataProvider& in, std::size_t min_len) {
    return in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::size_t>(min_len, 4));
}

Step decode_step(FuzzedDataProvider& in, bool first) {
    Step s;
    s.kind = static_cast<Step::Kind>(in.ConsumeIntegralInRange<int>(0, first ? 3 : 4));
    s.keep = in.ConsumeBool();
    switch (s.kind) {
        case Step::Kind::count:
            s.count = in.ConsumeIntegralInRange<std::size_t>(0, 24);
            break;
        case Step::Kind::string:
            s.strings.push_back(small_string(in, 0));
            break;
        case Step::Kind::any_of: {
            std::size_t n = in.ConsumeIntegralInRange<std::size_t>(2, 3);
            for (std::size_t i = 0; i < n; ++i) {
                std::string t = small_string(in, 1);
                // Terminator::any_of() refuses an empty string; the input ran out.
                if (t.empty()) t = "\n";
                s.strings.push_back(t);
            }
            break;
        }
        case Step::Kind::none:
        case Step::Kind::unchanged:
            break;
    }
    return s;
}

std::string describe(const Outcome& o) {
    std::string d = std::to_string(o.records.size()) + " records, limit " +
                    (o.limit_exceeded ? "exceeded" : "not exceeded") + ", partial " +
                    std::to_string(o.partial.size()) + " bytes";
    return d;
}

void check(const Outcome& want, const Outcome& got, const char* split) {
    bool same = want.records == got.records && want.limit_exceeded == got.limit_exceeded &&
                (want.limit_exceeded || want.partial == got.partial);
    if (same) return;
    std::fprintf(stderr,
                 "chat_scanner: the %s split differs from the model\n  model: %s\n  got:   %s\n",
                 split, describe(want).c_str(), describe(got).c_str());
    for (std::size_t i = 0; i < want.records.size() || i < got.records.size(); ++i) {
        bool w = i < want.records.size(), g = i < got.records.size();
        if (w && g && want.records[i] == got.records[i]) continue;
        std::fprintf(stderr, "  first difference at record %zu (model has it: %d, got it: %d)\n", i,
                     w, g);
        break;
    }
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const bool use_found_record = in.ConsumeBool();
    const std::size_t max_input =
        in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<std::size_t>(1, 64);
    Program program;
    const std::size_t steps = in.ConsumeIntegralInRange<std::size_t>(1, 4);
    for (std::size_t i = 0; i < steps; ++i)
        program.push_back(decode_step(in, i == 0));
    const std::uint32_t split_seed = in.ConsumeIntegral<std::uint32_t>();
    const std::string stream = in.ConsumeRemainingBytesAsString();

    const Outcome want = model(program, stream, max_input);
    check(want, run_split(program, use_found_record, max_input, {stream}), "whole");
    check(want, run_split(program, use_found_record, max_input, fuzz::split_bytes(stream)),
          "byte-by-byte");
    for (std::uint32_t i = 0; i < 2; ++i) {
        check(want,
              run_split(program, use_found_record, max_input,
                        fuzz::split_random(stream, split_seed + i)),
              "random");
    }
    return 0;
}
