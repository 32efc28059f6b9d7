#!/usr/bin/env bash
# Time the README's two commands on a fresh clone of this checkout's HEAD, cold then warm:
#
#   .ci/time-readme-commands.sh demo|tests [WORKDIR]      (as root; WORKDIR: /var/tmp/llblib-timing)
#
# cold: empty XDG_CACHE_HOME (llblib-async's buildkitd/runc cache, pip's cache, Go's build
#       cache), empty GOPATH (Go's module cache), a fresh clone (fresh .nox venvs), a fresh
#       venv for `pip install nox`, and LLBLIB_RUNC pointing nowhere (runc gets built).
#       The Debian packages of `nox -s tests` are taken as installed (apt time not included).
# warm: the same command again on the same directories.
set -uo pipefail
what=${1:?usage: $0 demo|tests [WORKDIR]}
base=${2:-/var/tmp/llblib-timing}/$what
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)

run() {
    local mode=$1 start end rc
    (
        export XDG_CACHE_HOME=$base/cache GOPATH=$base/gopath GOMODCACHE=$base/gopath/pkg/mod
        export LLBLIB_RUNC=/nonexistent/runc PATH=$base/venv/bin:$PATH
        unset BUILDKIT_HOST
        cd "$base/clone"
        start=$(date +%s)
        pip install -q nox && nox -s "$what"
        rc=$?
        end=$(date +%s)
        echo "== nox -s $what $mode: exit $rc in $((end - start))s (load $(cut -d' ' -f1-3 /proc/loadavg))"
    )
}

rm -rf "$base" && mkdir -p "$base"
git clone -q "$repo" "$base/clone"
python3 -m venv "$base/venv"
run cold
run warm
