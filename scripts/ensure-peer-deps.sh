#!/usr/bin/env bash
# What `make bench-peers` needs beyond `make deps`: Python's venv module (to install the
# peers from PyPI into .build/peers-venv, never system-wide) and a C compiler (for
# ShmBus's checksum as a shared library and the C pipe ping-pong). Installs the missing
# Debian packages with apt-get when run as root, and prints the exact command otherwise,
# as scripts/ensure-deps.sh does. Kept apart from ensure-deps.sh so that `make test`
# needs neither.
set -euo pipefail

python=${PEERS_PYTHON:-/usr/bin/python3}
missing=()
need() { # need PACKAGE TEST...
    local package=$1; shift
    if ! "$@" >/dev/null 2>&1; then missing+=("$package"); fi
}
need python3-venv "$python" -c 'import venv, ensurepip'
if ! command -v clang >/dev/null 2>&1; then need gcc command -v cc; fi

if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing missing packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
    echo "make bench-peers needs these packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
