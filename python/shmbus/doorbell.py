"""The writer's doorbell (docs/FORMAT.md, "Doorbell"): a one-page memfd that a reader
maps read-write to say that it sleeps (``sleeping``) or that it waits for the next
``Committed`` signal (``awaiting signal``), and whose ``word`` it sleeps on with
``FUTEX_WAIT``. Nothing in it is trusted: any reader of the channel may write all of
it, so a wake-up is only a hint to look at the segment again.

Pure Python: the futex calls go through ``ctypes`` to libc's ``syscall(2)``. Python
has no atomic store or fence, so the two flags are set by the kernel instead, with
``FUTEX_WAKE_OP`` (``FUTEX_OP_SET`` on the flag, waking nobody): the kernel does the
store as an atomic exchange, a full barrier, which is the protocol's "store 1, full
fence" before the reader loads ``word`` and looks at the segment once more. A reader
that cannot make the call (no libc syscall, an odd architecture) polls instead.

Waits are paced the way the Swift reader's ``WakePacing`` paces them, so that a
hostile reader waking us for nothing makes us sleep, not spin.
"""
import ctypes
import ctypes.util
import errno
import mmap
import os
import platform
import struct
import time

from . import format as F
from .errors import BadDoorbell, NotSealed
from .segment import check_memfd

__all__ = ["Doorbell", "futex_available"]

FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAKE_OP, FUTEX_PRIVATE_FLAG = 0, 1, 5, 128
# FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_EQ, 0): *uaddr2 = 1, wake uaddr2's waiters if
# it was 0 (nr_wake2 is 0, so nobody).
_OP_SET_ONE = (0 << 28) | (0 << 24) | (1 << 12) | 0
# FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0): *uaddr2 += 1.
_OP_ADD_ONE = (1 << 28) | (0 << 24) | (1 << 12) | 0

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "arm64": 98, "riscv64": 98, "i686": 240, "i386": 240,
              "armv7l": 240, "ppc64le": 221, "s390x": 238}.get(platform.machine())


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load_syscall():
    if _SYS_FUTEX is None:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.syscall
    except (OSError, AttributeError):
        return None
    call.restype = ctypes.c_long
    return call


_syscall = _load_syscall()


def futex_available():
    """Whether this interpreter can make futex calls (else readers poll)."""
    return _syscall is not None


_fence_word = None


def full_fence():
    """A full memory barrier from pure Python: the kernel's atomic exchange in
    FUTEX_WAKE_OP (FUTEX_OP_SET) on a private word, waking nobody. Without futexes,
    nothing (x86-64's stores are ordered anyway)."""
    global _fence_word
    if _syscall is None:
        return
    if _fence_word is None:
        page = mmap.mmap(-1, mmap.PAGESIZE)
        _fence_word = (page, ctypes.addressof(ctypes.c_char.from_buffer(page)))
    address = ctypes.c_void_p(_fence_word[1])
    _syscall(_SYS_FUTEX, address, ctypes.c_int(FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG), ctypes.c_int(0), None, address,
             ctypes.c_int(_OP_SET_ONE))


class _Pacing:
    """WakePacing of Sources/SharedSegments/Reader/WakePacing.swift, same figures:
    after more than one wait that ended early with nothing new, sleep 1, 2, 4… up to
    16 ms instead of waiting on the futex (once between two futex waits); once a wait
    timed out although something had been committed, wait at most 10 ms at a time
    until four wake-ups in a row brought something."""

    IDLE_WAKES_ALLOWED, FIRST_BACK_OFF, LONGEST_BACK_OFF = 1, 0.001, 0.016
    DISTRUSTED_STEP, WAKES_TO_TRUST_AGAIN = 0.010, 4

    def __init__(self):
        self.idle_wakes = 0
        self.just_slept = False
        self.missed_wake_up = False
        self.good_wakes = 0

    def plan(self, step):
        if self.idle_wakes > self.IDLE_WAKES_ALLOWED and not self.just_slept:
            doublings = max(min(self.idle_wakes - self.IDLE_WAKES_ALLOWED - 1, 16), 0)
            return "sleep", min(self.FIRST_BACK_OFF * (1 << doublings), self.LONGEST_BACK_OFF, step)
        return "wait", min(step, self.DISTRUSTED_STEP) if self.missed_wake_up else step

    def waited(self, outcome, progressed):
        self.just_slept = False
        if outcome == "timed-out":
            if progressed:
                self.missed_wake_up = True
                self.good_wakes = 0
        elif progressed:
            self.idle_wakes = 0
            self.good_wakes += 1
            if self.good_wakes >= self.WAKES_TO_TRUST_AGAIN:
                self.missed_wake_up = False
        else:
            self.idle_wakes = min(self.idle_wakes + 1, 1 << 16)
            self.good_wakes = 0


class Doorbell:
    """A doorbell received with a segment (OpenSegment's ``doorbell``). Takes
    ownership of nothing: `fd` is duplicated for the mapping, then closed."""

    def __init__(self, fd):
        try:
            check_memfd(fd, F.DOORBELL_SEALS, "doorbell")
        except NotSealed as error:
            raise BadDoorbell(str(error)) from None
        size = os.fstat(fd).st_size
        if size < F.DOORBELL_SIZE:
            raise BadDoorbell("doorbell is %d bytes, not %d" % (size, F.DOORBELL_SIZE))
        try:
            self._map = mmap.mmap(fd, F.DOORBELL_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as error:
            raise BadDoorbell("cannot map the doorbell read-write: %s" % error) from None
        # The mapping's address, for the futex calls (a ctypes view of a writable mmap).
        self._anchor = ctypes.c_char.from_buffer(self._map)
        self._base = ctypes.addressof(self._anchor)
        self._pacing = _Pacing()
        self.wakes = 0            # futex waits that ended by a wake-up (statistics)

    def _futex(self, offset, op, val, timeout=None, offset2=0, val3=0):
        if timeout is None:
            ts = None
        else:
            ts = ctypes.byref(_Timespec(int(timeout), int((timeout % 1) * 1e9)))
        result = _syscall(_SYS_FUTEX, ctypes.c_void_p(self._base + offset), ctypes.c_int(op), ctypes.c_int(val),
                          ts, ctypes.c_void_p(self._base + offset2), ctypes.c_int(val3))
        return result, (ctypes.get_errno() if result < 0 else 0)

    def word(self):
        return struct.unpack_from("<I", self._map, F.DOORBELL_WORD)[0]

    def _set_flag(self, offset):
        """Stores 1 into a flag with a full barrier: FUTEX_WAKE_OP's atomic SET (nobody
        woken), or a plain store when futexes are not to be had."""
        if _syscall is not None:
            result, _ = self._futex(F.DOORBELL_WORD, FUTEX_WAKE_OP, 0, None, offset, _OP_SET_ONE)
            if result >= 0:
                return
        struct.pack_into("<I", self._map, offset, 1)

    def expect_signal(self):
        """Bus path: this reader has read everything and waits for ``Committed``; the
        publisher then sends its next signal at once instead of coalescing it. The
        caller looks at the segment once more after this (a commit made before the
        publisher saw the flag is not missed)."""
        self._set_flag(F.DOORBELL_AWAITING_SIGNAL)

    def wait(self, timeout, ready):
        """Sleeps until rung, `timeout` (seconds) passes, or `ready()` is true; paced as
        the class says. Sets ``sleeping`` (never clears it: another reader may sleep),
        reads ``word``, checks `ready()` once more, then FUTEX_WAITs on ``word``
        (shared, not private). Returns whether a wake-up ended the wait."""
        if _syscall is None:
            time.sleep(min(timeout, 0.001))
            return False
        plan, step = self._pacing.plan(timeout)
        if plan == "sleep":
            time.sleep(step)
            self._pacing.just_slept = True
            return False
        self._set_flag(F.DOORBELL_SLEEPING)
        seen = self.word()
        if ready():
            return False
        result, err = self._futex(F.DOORBELL_WORD, FUTEX_WAIT, ctypes.c_int32(seen).value, step)
        if result == 0:
            outcome = "woken"
        elif err == errno.ETIMEDOUT:
            outcome = "timed-out"
        else:
            outcome = "early"           # EAGAIN (the word changed), EINTR, or a failure
        woke = outcome == "woken"
        if woke:
            self.wakes += 1
        self._pacing.waited(outcome, ready())
        return woke

    # MARK: writer side

    @classmethod
    def create(cls):
        """A new doorbell (writer side): a one-page memfd with the magic, sealed against
        resizing only (readers must write it)."""
        import fcntl
        fd = os.memfd_create("shmbus-doorbell", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, F.DOORBELL_SIZE)
            os.pwrite(fd, struct.pack("<Q", F.DOORBELL_MAGIC), 0)
            fcntl.fcntl(fd, F.F_ADD_SEALS, F.DOORBELL_SEALS)
            bell = cls(fd)
        except BaseException:
            os.close(fd)
            raise
        bell.fd = fd            # kept: it is registered with each segment
        return bell

    def ring(self, always=False):
        """Writer, after a commit: full fence, load ``sleeping``; only if set (or
        `always`, after retiring a segment), store 0 and add 1 to ``word`` and wake
        every sleeper in one FUTEX_WAKE_OP. Returns how many woke."""
        full_fence()
        if not always and struct.unpack_from("<I", self._map, F.DOORBELL_SLEEPING)[0] == 0:
            return 0
        struct.pack_into("<I", self._map, F.DOORBELL_SLEEPING, 0)
        if _syscall is None:
            struct.pack_into("<I", self._map, F.DOORBELL_WORD, (self.word() + 1) & 0xFFFFFFFF)
            return 0
        woke, _ = self._futex(F.DOORBELL_WORD, FUTEX_WAKE_OP, 0x7FFFFFFF, None, F.DOORBELL_WORD, _OP_ADD_ONE)
        return max(woke, 0)

    def take_signal_expectation(self):
        """Publisher: whether a bus reader said it waits for the next Committed (then
        cleared, so that it is served once)."""
        if struct.unpack_from("<I", self._map, F.DOORBELL_AWAITING_SIGNAL)[0] == 0:
            return False
        struct.pack_into("<I", self._map, F.DOORBELL_AWAITING_SIGNAL, 0)
        return True

    def close(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None
        if self._map is None:
            return
        del self._anchor
        try:
            self._map.close()
        except BufferError:
            pass
        self._map = None
