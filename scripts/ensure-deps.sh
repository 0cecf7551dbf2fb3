#!/usr/bin/env bash
# Checks that the system packages ShmBus needs are installed; installs the missing ones
# with apt-get when run as root, and prints the exact command otherwise.
set -euo pipefail

missing=()
need() { # need PACKAGE TEST...
    local package=$1; shift
    if ! "$@" >/dev/null 2>&1; then missing+=("$package"); fi
}
need pkg-config        command -v pkg-config
need libdbus-1-dev     pkg-config --exists dbus-1
need dbus-daemon       command -v dbus-daemon
# The other bus: FairLoadTests also floods a dbus-broker bus (scripts/dbus-broker-bus.py).
need dbus-broker       command -v dbus-broker
need dbus-bin          command -v dbus-send
need systemd           command -v busctl
need libglib2.0-bin    command -v gdbus
need libglib2.0-dev    pkg-config --exists gio-2.0 gio-unix-2.0
need python3-dbus      /usr/bin/python3 -c 'import dbus'
need python3-gi        /usr/bin/python3 -c 'from gi.repository import GLib'
need python3-venv      /usr/bin/python3 -c 'import ensurepip, venv'
need util-linux        command -v setsid
need bubblewrap        command -v bwrap
need gcc               command -v cc
need tmux              command -v tmux
need curl              command -v curl
# The NATS JetStream bridge (docs/BRIDGE.md): Debian's server (2.9 has JetStream) and C
# client (3.4 has its JetStream API), and `ip netns` for the two-host tests.
need nats-server       command -v nats-server
need libnats-dev       pkg-config --exists libnats
need iproute2          command -v ip
# The bridge's TLS tests make their CA and server certificate with it.
need openssl           command -v openssl
# scripts/watchdog.sh, around every test run: ps and pgrep to list what still runs
# (stdbuf is coreutils'); gdb for the stacks of a hung run.
need procps            command -v pgrep
need gdb               command -v gdb

if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

if ! command -v swift >/dev/null 2>&1; then
    echo "ShmBus needs a Swift 6.1+ toolchain on PATH (https://www.swift.org/install/linux/)." >&2
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing missing packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
    echo "ShmBus needs these packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
