// The doctest runner for every suite; `--test-suite=NAME` picks one.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
