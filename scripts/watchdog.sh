#!/usr/bin/env bash
# Usage: scripts/watchdog.sh SECONDS COMMAND [ARGUMENT...]
#
# Runs COMMAND with its output line-buffered (stdbuf: a test binary writing into a
# pipe otherwise holds its last lines in a block buffer, and a run that is killed
# loses exactly the lines that say where it stopped). If COMMAND has not ended after
# SECONDS, prints every process still running, with the kernel function each one
# waits in, ends COMMAND's process tree (SIGTERM, then SIGKILL 30 s later) and exits
# with 124, as timeout(1) does. A hung test then fails the run with a trace instead of
# holding CI until its own limit cuts the log mid-line.
set -uo pipefail
limit=$1
shift

fired=$(mktemp)
trap 'rm -f "$fired"' EXIT
stdbuf -oL -eL "$@" &
pid=$!

# Every process under $1, depth first.
descendants() {
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child"
        descendants "$child"
    done
}

watch() {
    # The sleep's output goes nowhere: a sleep left behind must not hold the caller's
    # pipe open (the way a leftover daemon would).
    sleep "$limit" </dev/null >/dev/null 2>&1 &
    wait $!
    kill -0 "$pid" 2>/dev/null || return
    echo fired >"$fired"
    {
        echo "watchdog: '$*' still running after ${limit} s; every process and what it waits in:"
        # Not the kernel's threads (kthreadd, pid 2, and its children).
        ps --ppid 2 -p 2 --deselect -o pid,ppid,etime,stat,wchan:28,args --forest | cut -c1-240
        for p in "$pid" $(descendants "$pid"); do
            echo "threads of $p ($(cat /proc/"$p"/comm 2>/dev/null)):"
            for task in /proc/"$p"/task/*; do
                printf '  %s %s %s\n' "${task##*/}" "$(cat "$task"/comm 2>/dev/null)" "$(cat "$task"/wchan 2>/dev/null)"
            done | sort -k2 | uniq -c -f1 | head -40
        done
        # Every thread's stack of the programs built here (a test binary, shmbus), if
        # gdb is installed: where a hang waits, not only in which kernel call.
        if command -v gdb >/dev/null; then
            for p in "$pid" $(descendants "$pid"); do
                case "$(readlink /proc/"$p"/exe 2>/dev/null)" in
                    */.build/*)
                        echo "stacks of $p ($(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null | cut -c1-160)):"
                        timeout 60 gdb -p "$p" -batch -nx -ex "thread apply all bt 25" </dev/null 2>&1 |
                            grep -E '^(Thread|#)' | { command -v swift-demangle >/dev/null && swift-demangle --simplified || cat; } |
                            cut -c1-200 | head -400
                        ;;
                esac
            done
        fi
    } >&2
    local tree
    tree=$(descendants "$pid")
    kill -TERM "$pid" $tree 2>/dev/null
    sleep 30 </dev/null >/dev/null 2>&1
    kill -KILL "$pid" $(descendants "$pid") $tree 2>/dev/null
}

watch "$@" &
dog=$!
wait "$pid"
status=$?
pkill -P "$dog" 2>/dev/null
kill "$dog" 2>/dev/null
# The command did not end by itself.
[ -s "$fired" ] && exit 124
exit "$status"
