#!/usr/bin/env bash
# Install what the llblib_async.testing fixtures need on Debian 12, as root.  Idempotent:
# when everything is present it changes nothing (and skips `apt-get update`).
#
# The fixtures start *private* daemons (own state dirs, sockets, containerd, random ports)
# and never use system services, so services that apt may start (docker, containerd,
# docker-registry on :5000) cannot conflict.  We still keep apt from starting them - on a
# systemd machine they would otherwise run for the whole CI job, create docker0 and
# rewrite iptables - through the standard policy-rc.d mechanism, only for this install.
#
# Not the only thing that knows: `nox -s tests` runs `python -m llblib_async.testing.provision
# tests`, which installs the same packages (DEBIAN_PACKAGES there; tests/test_provision.py
# keeps the two lists equal) when run as root on Debian.  runc is in the list for dockerd;
# buildkitd would build its own from the Go module proxy without it.
set -euo pipefail

PACKAGES=(
    runc            # buildkitd's OCI worker runs build steps with /usr/sbin/runc
    docker-registry # the loopback registry fixture (/usr/bin/docker-registry, distribution 2.8)
    busybox-static  # the busybox rootfs fixture: a *static* /bin/busybox
    docker.io       # the dockerd fixture (dockerd 20.10) and the docker CLI its tests drive
    containerd      # started privately for each test dockerd (a docker.io dependency anyway)
    tini            # docker-init, used by dockerd (a docker.io dependency anyway)
    iptables        # a docker.io dependency; the fixtures run dockerd with --iptables=false
    iproute2        # `ip`: each test dockerd gets a private bridge
    mount           # mount/umount
    tar             # the dockerd tests import the busybox rootfs as an image
    openssh-client  # ssh-agent, ssh-add, ssh-keygen for the SSH agent forwarding tests
    ca-certificates # Go fetches buildkit's module source from proxy.golang.org over HTTPS
    openssl         # the token-auth registry fixture makes its signing key and certificate
)

log() { printf '== install-prereqs: %s\n' "$*"; }
die() { printf '== install-prereqs: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (the fixtures need root too)"
[[ -r /etc/debian_version ]] || die "this script targets Debian 12 (no /etc/debian_version)"

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -qx 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# installed by .ci/install-prereqs.sh for the duration of one apt run\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "all packages present: ${PACKAGES[*]}"
fi

for binary in /usr/sbin/runc /usr/bin/docker-registry /bin/busybox /usr/sbin/dockerd /usr/bin/containerd; do
    [[ -x $binary ]] || die "$binary missing after install"
done

# Services of the packages are not needed; say so if some run (harmless for the fixtures).
if [[ -d /run/systemd/system ]]; then
    for unit in docker.service docker.socket containerd.service docker-registry.service; do
        if systemctl is-active --quiet "$unit" 2>/dev/null; then
            log "note: system $unit is running; the fixtures do not use it"
        fi
    done
fi

# Go builds buildkitd on first use (then it is cached in ~/.cache/llblib-async).
go=$(command -v go || true)
[[ -n $go ]] || { [[ -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go; }
if [[ -z $go ]]; then
    die "no Go toolchain: install it from https://go.dev/dl/ (tar -C /usr/local -xzf go*.linux-amd64.tar.gz) \
- Debian 12's golang-go (1.19) is too old; any Go >= 1.21 fetches the toolchain buildkit needs with GOTOOLCHAIN=auto"
fi
log "go: $("$go" version) (GOTOOLCHAIN=$("$go" env GOTOOLCHAIN))"
log "ok"
