"""Real peers for the tests: a private dbus-daemon (configured like the Swift tests'
PrivateBus), the real registry (`shmbus daemon` from this repository's build), and
Swift publishers (`shmbus publish`, `shmbus-test-peer publish`). No mock anywhere.

The binaries come from SHMBUS_BUILD (default: <repository>/.build/debug); build them
with `swift build --product shmbus && swift build --product shmbus-test-peer`
(`make test` builds them anyway). Every process started here is killed at the end of
its fixture, and temporary files live under /tmp/pyshm-*.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SHMBUS_BUILD") or os.path.join(REPO, ".build", "debug")

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_message_unix_fds">64</limit>
  <limit name="max_message_size">134217728</limit>
</busconfig>
"""


def binary(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        pytest.fail("%s is not built: run `swift build --product %s` in %s (or set SHMBUS_BUILD)" % (path, name, REPO),
                    pytrace=False)
    return path


def kill(process):
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


class Peers:
    """The bus, the registry, and the processes a test starts (killed at its end)."""

    def __init__(self, address, directory):
        self.address = address
        self.directory = directory
        self.processes = []

    def start(self, args, **kwargs):
        kwargs.setdefault("stdin", subprocess.PIPE)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        process = subprocess.Popen(args, **kwargs)
        self.processes.append(process)
        return process

    def shmbus(self, *args, input=None, timeout=60):
        """Runs the shmbus command line on this bus; returns the CompletedProcess."""
        return subprocess.run([binary("shmbus"), *args, "--bus", self.address], input=input,
                              capture_output=True, timeout=timeout)

    def test_peer(self, *args):
        """`shmbus-test-peer MODE ADDRESS ARGS…`, started; its first line is read ("ready …")."""
        mode, rest = args[0], args[1:]
        process = self.start([binary("shmbus-test-peer"), mode, self.address, *map(str, rest)])
        return process

    def cleanup(self):
        for process in reversed(self.processes):
            if process.stdin:
                try:
                    process.stdin.close()
                except OSError:
                    pass
            try:
                process.wait(timeout=5 if process.poll() is None else 0)
            except subprocess.TimeoutExpired:
                pass
            kill(process)
            for stream in (process.stdout, process.stderr):
                if stream:
                    stream.close()
        self.processes.clear()


def wait_for_name(address, name, timeout=60):
    import dbus
    connection = dbus.bus.BusConnection(address)
    try:
        deadline = time.monotonic() + timeout
        while not connection.name_has_owner(name):
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not appear on %s" % (name, address))
            time.sleep(0.02)
    finally:
        connection.close()


class PrivateBus:
    """A dbus-daemon of its own on a private address, and the registry on it."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="pyshm-bus-")
        config = os.path.join(self.directory, "bus.conf")
        with open(config, "w") as f:
            f.write(BUS_CONFIG.format(dir=self.directory))
        self.daemon = subprocess.Popen(["dbus-daemon", "--config-file=" + config, "--nofork", "--print-address=1"],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=open(os.path.join(self.directory, "bus.log"), "w"))
        self.registry = None
        self.address = self.daemon.stdout.readline().decode().strip()
        if not self.address:
            self.stop()
            raise RuntimeError("dbus-daemon printed no address (see %s/bus.log)" % self.directory)

    def start_registry(self):
        self.registry = subprocess.Popen([binary("shmbus"), "daemon", "--bus", self.address, "--log-level", "warning"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=open(os.path.join(self.directory, "registry.log"), "a"))
        wait_for_name(self.address, "org.shmbus.Registry1")

    def kill_registry(self):
        if self.registry is not None:
            kill(self.registry)
            self.registry = None

    def stop(self):
        self.kill_registry()
        kill(self.daemon)
        self.daemon.stdout.close()
        # The keeper the registry started follows the bus: it exits when the bus goes.
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def bus():
    """A private dbus-daemon and the real registry on it, shared by the tests (each
    uses channels of its own): (address, directory)."""
    private = PrivateBus()
    try:
        private.start_registry()
        yield private.address, private.directory
    finally:
        private.stop()


@pytest.fixture
def own_bus():
    """A bus and registry of this test's own, for tests that stop the registry."""
    private = PrivateBus()
    try:
        private.start_registry()
        peers = Peers(private.address, private.directory)
        peers.private = private
        yield peers
        peers.cleanup()
    finally:
        private.stop()


@pytest.fixture
def peers(bus):
    p = Peers(*bus)
    yield p
    p.cleanup()


@pytest.fixture
def channel(request):
    """A channel name of this test's own."""
    return "py/%s/%s" % (request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60],
                         uuid.uuid4().hex[:8])


@pytest.fixture
def tmp():
    path = tempfile.mkdtemp(prefix="pyshm-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
