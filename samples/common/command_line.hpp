// Command-line parsing shared by the samples: `--name VALUE` options,
// `--flag` switches and, where a program takes them, positional arguments.
// Anything else (an unknown option, a missing value, a number that does not
// parse or is out of range, a wrong count of positional arguments) prints the
// usage text and exits with status 2.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sample {

class CommandLine {
  public:
    /// `valued` and `flags` name the accepted options without their "--".
    /// Listing "help" among the flags makes `--help` and `-h` print the usage
    /// text to stdout and exit 0. `positionals` is how many arguments that do
    /// not start with "--" the program takes: exactly that many, in any place
    /// among the options; read them with positional().
    CommandLine(int argc, char** argv, std::string usage,
                std::initializer_list<std::string_view> valued,
                std::initializer_list<std::string_view> flags = {}, std::size_t positionals = 0)
        : usage_(std::move(usage)) {
        std::set<std::string_view> takes_value(valued), is_flag(flags);
        bool help = is_flag.count("help") != 0;
        for (int i = 1; i < argc; ++i) {
            std::string_view arg = argv[i];
            if (help && (arg == "--help" || arg == "-h")) print_help();
            if (arg.substr(0, 2) != "--") {
                positional_.emplace_back(arg);
                continue;
            }
            std::string_view name = arg.substr(2);
            if (is_flag.count(name) != 0) {
                flags_.emplace(name);
            } else if (takes_value.count(name) != 0 && i + 1 < argc) {
                values_[std::string(name)] = argv[++i];
            } else {
                this->usage();
            }
        }
        if (positional_.size() != positionals) this->usage();
    }

    bool flag(std::string_view name) const { return flags_.count(std::string(name)) != 0; }
    bool has(std::string_view name) const { return values_.count(std::string(name)) != 0; }

    /// The i-th positional argument; i is below the count the constructor got.
    const std::string& positional(std::size_t i) const { return positional_.at(i); }

    std::string get(std::string_view name, std::string fallback = {}) const {
        auto it = values_.find(std::string(name));
        return it == values_.end() ? fallback : it->second;
    }

    long number(std::string_view name, long fallback) const {
        auto it = values_.find(std::string(name));
        if (it == values_.end()) return fallback;
        char* end = nullptr;
        errno = 0;
        long v = std::strtol(it->second.c_str(), &end, 10);
        if (errno != 0 || end == it->second.c_str() || *end != '\0') usage();
        return v;
    }

    /// As number(), and a given value outside [min, max] is a usage error
    /// too. The fallback is the program's own and is not checked.
    long number(std::string_view name, long fallback, long min, long max) const {
        long v = number(name, fallback);
        if (has(name) && (v < min || v > max)) usage();
        return v;
    }

    /// A decimal number such as 0.5 or 1e-3. Out of double's range is a
    /// usage error, as for number().
    double real(std::string_view name, double fallback) const {
        auto it = values_.find(std::string(name));
        if (it == values_.end()) return fallback;
        char* end = nullptr;
        errno = 0;
        double v = std::strtod(it->second.c_str(), &end);
        if (errno != 0 || end == it->second.c_str() || *end != '\0') usage();
        return v;
    }

    /// As real(), and a given value outside [min, max] is a usage error too,
    /// as is "nan" (strtod() takes it, and it compares false with anything).
    /// The fallback is the program's own and is not checked.
    double real(std::string_view name, double fallback, double min, double max) const {
        double v = real(name, fallback);
        if (has(name) && !(v >= min && v <= max)) usage();
        return v;
    }

    /// Prints the usage text (after `why`, if given) to stderr and exits 2.
    [[noreturn]] void usage(const char* why = nullptr) const {
        if (why != nullptr) std::fprintf(stderr, "%s\n", why);
        std::fprintf(stderr, "%s\n", usage_.c_str());
        std::exit(2);
    }

  private:
    [[noreturn]] void print_help() const {
        std::printf("%s\n", usage_.c_str());
        std::exit(0);
    }

    std::string usage_;
    std::map<std::string, std::string> values_;
    std::set<std::string> flags_;
    std::vector<std::string> positional_;
};

}  // namespace sample
