#!/usr/bin/env bash
# The showcase `./dev demo` runs: every sample area's demo.sh fragment, in a
# fixed order, each given the build directory. Each fragment takes a few
# seconds, prints what it does, and cleans up its own processes.
set -euo pipefail
build=$(cd "${1:?usage: demo.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
for area in echo http_client chat smtp resp tut_sock http_server msg_echo tls_echo; do
    frag="$here/$area/demo.sh"
    [ -f "$frag" ] || continue
    echo
    echo "=== $area"
    bash "$frag" "$build"
done
