#!/bin/bash
# Prepare this Debian machine to build, test and demo Anabranch: Debian packages,
# kernel headers for BCC, and the project venv.  Run as root; idempotent (a second
# run installs nothing and changes nothing).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

say()  { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33m[setup] WARNING:\033[0m %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "[setup] must run as root (it installs Debian packages and kernel headers)" >&2
    exit 1
fi

# What the daemon, the tests and the demo need from Debian.  python3-bpfcc is the
# only source of BCC's Python module; chromium is for the browser tests.
PACKAGES=(
    python3-bpfcc python3-venv python3-pip iproute2 iputils-ping ethtool procps kmod util-linux
    iperf3 tcpdump nftables chromium fonts-dejavu-core sqlite3 ca-certificates
    # Packaging: build deps of debian/control, lintian, and `vagrant validate`.
    dpkg-dev debhelper build-essential fakeroot python3-pytest python3-pytest-timeout lintian vagrant
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

KVER=$(uname -r)
HEADERS_OK=0
[ -e "/lib/modules/$KVER/build/include/generated/autoconf.h" ] && HEADERS_OK=1

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        apt-get update -q
        apt_updated=1
    fi
}

if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    say "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    say "Debian packages present"
fi

# Kernel headers: BCC compiles the datapath at start-up against
# /lib/modules/$(uname -r)/build.  Prefer the running kernel's own headers; a
# custom or VM kernel has none in the archive, so fall back to Debian's generic
# headers (the datapath uses only UAPI definitions, which are stable).
if [ "$HEADERS_OK" -eq 0 ]; then
    apt_update_once
    if apt-cache show "linux-headers-$KVER" >/dev/null 2>&1; then
        say "installing linux-headers-$KVER"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "linux-headers-$KVER"
    else
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends linux-headers-amd64
        generic=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -n1)
        common=${generic%-amd64}-common
        warn "no headers package for the running kernel $KVER in the archive."
        warn "linking Debian's generic headers instead: build -> $generic, source -> $common"
        warn "(BCC uses them only for UAPI definitions; install matching headers if you have them)"
        mkdir -p "/lib/modules/$KVER"
        ln -sfn "$generic" "/lib/modules/$KVER/build"
        ln -sfn "$common" "/lib/modules/$KVER/source"
    fi
else
    say "kernel headers present for $KVER"
fi

# The venv sees Debian's python3-bpfcc through --system-site-packages.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.base_prefix != "/usr")'; then
    say "creating .venv from /usr/bin/python3 (with system site packages, for BCC)"
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
fi

# Reinstall only when the project's dependency list changed.
stamp=.venv/.anabranch-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the project and its test dependencies into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
    echo "$want" > "$stamp"
else
    say ".venv up to date"
fi

.venv/bin/python -c 'import bcc, anabranch.daemon, anabranch.webui' \
    || { echo "[setup] the venv cannot import bcc or anabranch" >&2; exit 1; }
say "ready: $REPO/.venv"
