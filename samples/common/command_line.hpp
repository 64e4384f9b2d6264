// Command-line parsing shared by the samples: `--name VALUE` options and
// `--flag` switches. Anything else (an unknown option, a missing value, a
// number that does not parse) prints the usage line and exits with status 2.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>

namespace sample {

class CommandLine {
  public:
    /// `valued` and `flags` name the accepted options without their "--".
    CommandLine(int argc, char** argv, std::string usage,
                std::initializer_list<std::string_view> valued,
                std::initializer_list<std::string_view> flags = {})
        : usage_(std::move(usage)) {
        std::set<std::string_view> takes_value(valued), is_flag(flags);
        for (int i = 1; i < argc; ++i) {
            std::string_view arg = argv[i];
            if (arg.substr(0, 2) != "--") this->usage();
            std::string_view name = arg.substr(2);
            if (is_flag.count(name) != 0) {
                flags_.emplace(name);
            } else if (takes_value.count(name) != 0 && i + 1 < argc) {
                values_[std::string(name)] = argv[++i];
            } else {
                this->usage();
            }
        }
    }

    bool flag(std::string_view name) const { return flags_.count(std::string(name)) != 0; }
    bool has(std::string_view name) const { return values_.count(std::string(name)) != 0; }

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

    double real(std::string_view name, double fallback) const {
        auto it = values_.find(std::string(name));
        if (it == values_.end()) return fallback;
        char* end = nullptr;
        double v = std::strtod(it->second.c_str(), &end);
        if (end == it->second.c_str() || *end != '\0') usage();
        return v;
    }

    /// Prints the usage line (and `why`, if given) to stderr and exits 2.
    [[noreturn]] void usage(const char* why = nullptr) const {
        if (why != nullptr) std::fprintf(stderr, "%s\n", why);
        std::fprintf(stderr, "%s\n", usage_.c_str());
        std::exit(2);
    }

  private:
    std::string usage_;
    std::map<std::string, std::string> values_;
    std::set<std::string> flags_;
};

}  // namespace sample
