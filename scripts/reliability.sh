#!/usr/bin/env bash
# The reliability suite in its full form (docs/RELIABILITY.md): real processes on a
# private bus, 50 publisher kills, daemon restarts, killed and stopped subscribers,
# hostile content, exhaustion, registry restarts with persistent data, doorbell attacks,
# floods and registries of thousands of segments, and 1,000,000 randomized corrupt segments.
# Prints each scenario's figures at the end; the whole log is in .build/reliability.log.
set -euo pipefail
cd "$(dirname "$0")/.."
swift="${SWIFT:-swift}"
suites='PublisherKillTests|DaemonRestartTests|SubscriberFaultTests|HostileContentTests|ExhaustionTests|HostileCallTests|spoofedCommittedSignalsAreIgnored|CorruptionTests|PersistenceTests|LineageTests|DoorbellAttackTests|FairLoadTests|RegistryScaleTests|DescriptorLimitTests'
"$swift" build --build-tests
mkdir -p .build
log=.build/reliability.log
status=0
SHMBUS_RELIABILITY=full SHMBUS_FUZZ_CASES="${SHMBUS_FUZZ_CASES:-1000000}" \
    "$swift" test --skip-build --filter "$suites" 2>&1 | tee "$log" || status=$?
echo
echo "== reliability figures ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)) =="
grep -E '^reliability:|^CorruptionTests|Test run with' "$log" || true
exit "$status"
