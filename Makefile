# ShmBus: the two quick-start commands are `make demo` and `make test`.
SWIFT ?= swift
SHELL := /bin/bash

.PHONY: bridge-venv deps generate demo test test-python bench-python test-asan test-tsan reliability build release install clean docs bench-peers

deps:
	@bash scripts/ensure-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product shmbus

## The main job: a private bus if none runs, the registry daemon, a publisher and a subscriber.
demo: release
	.build/release/shmbus demo

## The whole test suite, against real dbus-daemons started on private addresses. The
## suites that load the machine on purpose (floods, thousands of segments, descriptor
## limits) run after the rest, one at a time: beside 270 other tests on two cores, each
## measured the suite rather than the daemon (a bystander's quiet Lookup p99 was 422 ms),
## and their floods pushed unrelated calls past libdbus's 25 s timeout.
LOAD_SUITES := FairLoadTests|RegistryScaleTests|DescriptorLimitTests|ExhaustionTests
## Each run is under scripts/watchdog.sh: a test that hangs fails the run after the
## limit with every process and what it waits in, its output line-buffered up to there
## (in a fresh clone here the two runs take about 3 minutes and 1; CI allows 90 for all).
## The load suites report latencies (never checked: tests assert no timings) of the
## release daemon, as installed: the debug one spends about ten times the CPU per call,
## and a user's Lookup p99 during another's flood read 331-489 ms with it against
## 10.9-19.4 ms with the release one, alternating in one run (docs/RELIABILITY.md).
test: deps bridge-venv
	$(SWIFT) build --build-tests
	$(SWIFT) build -c release --product shmbus
	scripts/watchdog.sh 1800 $(SWIFT) test --skip-build --skip '$(LOAD_SUITES)'
	SHMBUS_TEST_DAEMON=$(CURDIR)/.build/release/shmbus \
		scripts/watchdog.sh 1200 $(SWIFT) test --skip-build --filter '$(LOAD_SUITES)' --no-parallel
	$(MAKE) --no-print-directory test-python

## nats-py (pinned) for BridgeTests' plain NATS client, from PyPI into a venv in .build,
## made before the suite runs: on a loaded machine pip's name lookups time out, and the
## test makes it only when this did not.
BRIDGE_VENV := .build/bridge-venv
bridge-venv:
	@if [ ! -f $(BRIDGE_VENV)/nats-py-installed ]; then \
		/usr/bin/python3 -m venv $(BRIDGE_VENV) && \
		$(BRIDGE_VENV)/bin/python -m pip install --quiet --retries 10 --timeout 60 nats-py==2.9.0 && \
		touch $(BRIDGE_VENV)/nats-py-installed; fi

## The Python package (python/) against real peers: a private dbus-daemon, the registry
## and Swift publishers from the debug build (built here if `test` has not built them),
## the camera example's among them (examples/python/camera_frames.py reads its frames), and
## the example thumbnailer's service (examples/python/thumbnail.py calls it).
## Debian's /usr/bin/python3 on purpose: dbus-python is its python3-dbus, which a venv
## sees only with --system-site-packages (the first python3 on PATH may be another one).
PYTHON_VENV := .build/python-venv
test-python: deps
	$(SWIFT) build --product shmbus
	$(SWIFT) build --product shmbus-test-peer
	$(SWIFT) build --product camera-publisher
	$(SWIFT) build --product thumbnailer-service
	@if [ ! -x $(PYTHON_VENV)/bin/python ]; then /usr/bin/python3 -m venv --system-site-packages $(PYTHON_VENV); fi
	$(PYTHON_VENV)/bin/pip install --quiet -e './python[test]'
	cd python && ../scripts/watchdog.sh 900 ../$(PYTHON_VENV)/bin/python -m pytest -q -p no:cacheprovider tests

## The Python subscriber beside the Swift one, with the Swift benchmark's publishers
## (release build); docs/BENCHMARKS.md, "The Python subscriber".
bench-python: release
	@if [ ! -x $(PYTHON_VENV)/bin/python ]; then /usr/bin/python3 -m venv --system-site-packages $(PYTHON_VENV); fi
	$(PYTHON_VENV)/bin/pip install --quiet -e './python[test]'
	SHMBUS_BUILD=$(CURDIR)/.build/release $(PYTHON_VENV)/bin/python python/benchmarks/bench.py $(PYTHON_BENCH_ARGS)

## Faults and hostile peers in their full form (docs/RELIABILITY.md); the quick form runs in `make test`.
reliability: deps
	SWIFT=$(SWIFT) bash scripts/reliability.sh

## The whole suite under AddressSanitizer (with LeakSanitizer), in .build-asan. The child
## processes the tests start (shmbus, shmbus-test-peer, the examples) come from the same
## build, so they are checked too. Tests run one at a time: in parallel, five
## sanitizer-slowed processes per test on two cores push the GLib and Python clients past
## their timeouts. LeakSanitizer false positives and leaks outside ShmBus: scripts/lsan.supp.
## ASan's quarantine (freed memory it holds back to catch use-after-free, 256 MiB by
## default) is made small so that ExhaustionTests' bound on the daemon's memory growth
## measures the daemon, not the quarantine (504 MiB peak with the default, 106 MiB with 8).
test-asan: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	ASAN_OPTIONS=quarantine_size_mb=8:thread_local_quarantine_size_kb=64 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp:print_suppressions=0 \
		$(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan --no-parallel

## The whole suite under ThreadSanitizer, in .build-tsan, child processes included. Locks
## are pthread mutexes (Sources/Locking), which ThreadSanitizer understands, so no
## suppressions are needed. Tests run one at a time, for the same reason as test-asan.
test-tsan: deps
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan --no-parallel

## The API documentation of `import ShmBus` (DocC, through swift-docc-plugin), built into
## .build/docs/ShmBus.doccarchive, a static site: serve that folder and open
## /documentation/shmbus. ShmBus re-exports types it does not declare (ShmBusError, Chunk,
## ChannelCursor.Start, the Registry1 proxies…), and the plugin's symbol graph holds only
## the module's own declarations; so a second graph of the module, re-exports included
## (swift-symbolgraph-extract's -experimental-allowed-reexported-modules), is extracted
## first from the debug build with the module paths SwiftPM compiles ShmBus with, and
## DocC merges the two.
DOCS := .build/docs
docs: deps
	$(SWIFT) build --target ShmBus
	@set -euo pipefail; \
	bin=$$($(SWIFT) build --show-bin-path); triple=$$(basename "$$(dirname "$$bin")"); \
	extract=$$(command -v swift-symbolgraph-extract || echo "$$(dirname "$$(command -v $(SWIFT))")/swift-symbolgraph-extract"); \
	rm -rf $(DOCS)/reexported && mkdir -p $(DOCS)/reexported; \
	echo "Extracting ShmBus's symbol graph with its re-exports"; \
	"$$extract" -module-name ShmBus -target "$$triple" -minimum-access-level public \
		-experimental-allowed-reexported-modules=ShmBusProtocol,SharedSegments,DBus \
		-I "$$bin/Modules" -module-cache-path "$$bin/ModuleCache" \
		-Xcc -fmodule-map-file="$$bin/CShmBusLinux.build/module.modulemap" -Xcc -I -Xcc Sources/CShmBusLinux/include \
		-Xcc -fmodule-map-file=Sources/CDBus/module.modulemap $$(pkg-config --cflags dbus-1 | sed 's/-I/-Xcc -I/g') \
		-Xcc -fmodule-map-file=.build/checkouts/swift-system/Sources/CSystem/include/module.modulemap \
		-Xcc -I -Xcc .build/checkouts/swift-system/Sources/CSystem/include \
		-output-dir $(DOCS)/reexported
	$(SWIFT) package --allow-writing-to-directory $(DOCS) generate-documentation --target ShmBus \
		--additional-symbol-graph-dir $(DOCS)/reexported --output-path $(DOCS)/ShmBus.doccarchive

## ShmBus beside the zero-copy peers iceoryx2 and Zenoh (shared memory), the same parts in
## one invocation, one table (issue 14, "Peers, side by side"; docs/BENCHMARKS.md). Needs
## PyPI the first time: the peers (bench/peers/requirements.txt, pinned) go into a venv in
## .build/peers-venv, made with PEERS_PYTHON. Not part of `make test`.
## PEERS_ARGS passes options to bench/peers/run.py (e.g. PEERS_ARGS=--quick, or
## PEERS_ARGS='--sizes 4KiB,64MiB'); every figure is also written to .build/peers/last-run.json.
PEERS_PYTHON ?= /usr/bin/python3
PEERS_VENV := .build/peers-venv
PEERS_CC ?= $(shell command -v clang || echo cc)
PEERS_ARGS ?=
bench-peers: release $(PEERS_VENV)/installed .build/peers/libsum64.so .build/peers/pingpong
	$(PEERS_VENV)/bin/python bench/peers/run.py --shmbus .build/release/shmbus --json .build/peers/last-run.json $(PEERS_ARGS)
	@echo "ShmBus's own Python client (python/), beside the Swift subscriber, the same blob sizes:"
	$(MAKE) --no-print-directory bench-python PYTHON_BENCH_ARGS='--sizes 4KiB,1MiB,16MiB,64MiB,256MiB'

# python3-venv and a C compiler come with `make deps` (scripts/ensure-deps.sh).
$(PEERS_VENV)/installed: bench/peers/requirements.txt | deps
	test -x $(PEERS_VENV)/bin/python || $(PEERS_PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q -r bench/peers/requirements.txt
	touch $@

## ShmBus's benchmark checksum, compiled as SwiftPM compiles it (clang -O2), for the peers' subscribers.
.build/peers/libsum64.so: Sources/CShmBusBench/sum64.c Sources/CShmBusBench/include/CShmBusBench.h | deps
	@mkdir -p $(@D)
	$(PEERS_CC) -O2 -shared -fPIC -I Sources/CShmBusBench/include -o $@ $<

.build/peers/pingpong: bench/peers/pingpong.c
	@mkdir -p $(@D)
	$(PEERS_CC) -O2 -o $@ $<

## Installs shmbus into ~/.local/bin and the D-Bus activation file for the session bus.
install: release
	install -D -m 755 .build/release/shmbus $(HOME)/.local/bin/shmbus
	$(HOME)/.local/bin/shmbus install-service

clean:
	rm -rf .build .build-asan .build-tsan

## Regenerates Sources/ShmBusProtocol/Generated from dbus/*.xml, and the blob test
## service's contract in Sources/ShmBusTesting/Generated and the example thumbnailer's in
## examples/thumbnailer/Protocol (ContractGenerationTests
## fail while the committed files differ from a fresh run).
generate: deps
	$(SWIFT) build --product shmbus-codegen
	.build/debug/shmbus-codegen --output Sources/ShmBusProtocol/Generated dbus/org.shmbus.Registry1.xml dbus/org.shmbus.Publisher1.xml dbus/org.shmbus.Keeper1.xml
	.build/debug/shmbus-codegen --output Sources/ShmBusTesting/Generated dbus/testing/org.shmbus.testing.BlobEcho1.xml
	.build/debug/shmbus-codegen --output examples/thumbnailer/Protocol examples/thumbnailer/dbus/org.shmbus.examples.Thumbnailer1.xml
