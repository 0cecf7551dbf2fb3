#!/usr/bin/env bash
# Before and after in one run (docs/RELIABILITY.md, "Fair under load"): runs the load
# scenarios against an older `shmbus` (the daemon the tests start, through
# SHMBUS_TEST_DAEMON) and against this build, alternating, ROUNDS times each, in their
# full form, one suite at a time (suites run in parallel otherwise, and would load the
# machine for each other), and prints each run's figures.
#
#   scripts/compare-daemon.sh OLD_SHMBUS [ROUNDS] [FILTER]
#
# OLD_SHMBUS is a `shmbus` built from the commit to compare with (copy
# .build/debug/shmbus aside before checking out the change). FILTER defaults to the
# issue 13 scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
old="${1:?usage: scripts/compare-daemon.sh OLD_SHMBUS [ROUNDS] [FILTER]}"
rounds="${2:-2}"
filter="${3:-FairLoadTests|RegistryScaleTests|DescriptorLimitTests|ExhaustionTests}"
swift="${SWIFT:-swift}"
"$swift" build --build-tests >/dev/null
echo "== $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(uname -r), $("$swift" --version 2>&1 | head -1)"
IFS='|' read -r -a suites <<<"$filter"
for round in $(seq 1 "$rounds"); do
    for suite in "${suites[@]}"; do
        for daemon in "$old" ""; do
            echo "== round $round, $suite, daemon ${daemon:-this build}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
            SHMBUS_TEST_DAEMON="$daemon" SHMBUS_RELIABILITY=full \
                "$swift" test --skip-build --filter "$suite" 2>&1 | grep -E '^reliability:|✘' || true
        done
    done
done
