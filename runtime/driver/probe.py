"""Load an rtcap eBPF probe (CO-RE or per-kernel object), filter, attach and consume it.

The ring buffer is read straight from its memory mapping (consumer page read-write,
producer page and data read-only, the data mapped twice by the kernel so a record never
wraps): no per-record callback through ctypes, and each record is decoded in place
before the consumer position moves past it. Wakeups come from epoll on the map fd.

The probe stages records per CPU and outputs them in batches (one ring record holds
several 8-byte aligned rtcap records). A batch goes out when full or, at the next
record, when old; a CPU that falls quiet with a batch staged is flushed from here:
poll() reads the stages' state through their memory mapping and runs the probe's
rtcap_flush program on any CPU whose batch waited longer than flush_after_ms.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import select
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

from drivercore import libbpf as lb
from runtime.driver import _schema
from runtime.driver._syscalls import SYSCALLS
from runtime.driver.errors import DriverError, ProbeConfigError, SchemaMismatchError
from runtime.driver.ringmem import load_acquire_u32, load_acquire_u64, store_release_u64
from runtime.driver.schema import (
    AT_ENTER_SYSCALLS,
    GENERIC_ID,
    NON_SYSCALL_EVENTS,
    SYSCALL_EVENT,
    DecodeError,
    Decoder,
    boot_clock_ns,
    machine_arch,
)
from runtime.events import Event

# Names inside the object (driver/bpf/rtcap.bpf.c).
MAP_RINGBUF: Final = "rtcap_ringbuf"
MAP_STATS: Final = "rtcap_stats_map"
MAP_SCRATCH: Final = "rtcap_scratch_map"
MAP_CTL: Final = ".data.rtcap_ctl"
MAP_META: Final = ".rodata.rtcap_meta"
MAP_STAGE: Final = "rtcap_stage_map"
PROG_SYS_EXIT: Final = "rtcap_sys_exit"
PROG_SYS_ENTER: Final = "rtcap_sys_enter"
PROG_PROCEXIT: Final = "rtcap_sched_process_exit"
PROG_FLUSH: Final = "rtcap_flush"

# struct rtcap_ctl of rtcap.bpf.c: filter bytes, then u32 capture, ignore_tgid,
# wakeup_mask, procexit, count_filtered, wakeup_bytes, batch_bytes, batch_age_us.
_CTL_TAIL: Final = struct.Struct("=8I")
CTL_SIZE: Final = _schema.MAX_SYSCALLS + _CTL_TAIL.size

# BPF ring buffer record header bits (include/uapi/linux/bpf.h)
_RB_BUSY: Final = 1 << 31
_RB_DISCARD: Final = 1 << 30
_RB_HDR: Final = 8
_U32: Final = struct.Struct("=I")
_STATS: Final = struct.Struct("=" + "Q" * len(_schema.STATS_FIELDS))
_LEN_AT: Final = 24  # rtcap_event_hdr.len

# struct rtcap_stage of rtcap.bpf.c: u64 first_ts, u32 pend, u32 nevts, ...
_STAGE_HEAD: Final = struct.Struct("=QII")
STAGE_BYTES_MAX: Final = 4096  # STAGE_HALF: the most a batch may hold

DEFAULT_RINGBUF_BYTES: Final = 8 * 1024 * 1024
DEFAULT_BATCH_BYTES: Final = 4096
DEFAULT_BATCH_AGE_US: Final = 1000
DEFAULT_FLUSH_AFTER_MS: Final = 10
_FLUSH_TRIES: Final = 100


@dataclass(frozen=True)
class CpuStats:
    """One CPU's counters (field meanings in driver/schema/events.yaml)."""

    cpu: int
    n_evts: int
    n_drops_buffer: int
    n_drops_pf: int
    n_drops_bug: int
    n_filtered: int
    n_ignored_self: int
    n_partial_pf: int
    n_truncated: int

    @property
    def drops(self) -> int:
        return self.n_drops_buffer + self.n_drops_pf + self.n_drops_bug

    @property
    def delivered(self) -> int:
        return self.n_evts - self.drops


assert [f.name for f in fields(CpuStats)][1:] == _schema.STATS_FIELDS, "CpuStats drifted"


def total(stats: Iterable[CpuStats]) -> CpuStats:
    """Sum over CPUs (cpu = -1)."""
    sums = [0] * len(_schema.STATS_FIELDS)
    for s in stats:
        for i, name in enumerate(_schema.STATS_FIELDS):
            sums[i] += getattr(s, name)
    return CpuStats(-1, *sums)


def resolve_filter(syscalls: Iterable[str], arch: str) -> tuple[bytes, bool, bool]:
    """Filter bytes (syscall nr -> event type id), whether sys_enter is needed, whether
    procexit is wanted. Names of syscalls another arch has but this one lacks (e.g.
    `open` on arm64) are skipped, since rules are written for every arch at once."""
    table = SYSCALLS[arch]
    known_anywhere = {name for t in SYSCALLS.values() for name in t}
    filt = bytearray(_schema.MAX_SYSCALLS)
    need_enter = procexit = False
    for name in syscalls:
        if name in NON_SYSCALL_EVENTS:
            procexit = procexit or name == "procexit"
            continue
        nr = table.get(name)
        if nr is None:
            if name in known_anywhere:
                continue
            raise ProbeConfigError(
                f"syscall {name!r} is unknown: use a name from the {arch} syscall table"
            )
        if nr >= _schema.MAX_SYSCALLS:
            raise ProbeConfigError(f"syscall {name!r} has nr {nr} beyond the filter size")
        filt[nr] = SYSCALL_EVENT.get(name, GENERIC_ID)
        need_enter = need_enter or name in AT_ENTER_SYSCALLS
    return bytes(filt), need_enter, procexit


class RingReader:
    """Consumer side of a BPF_MAP_TYPE_RINGBUF, through its memory mapping."""

    def __init__(self, map_fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._prod = mmap.mmap(
            map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self.data = memoryview(self._prod)[page:]
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)
        self.decode_errors = 0  # records that did not follow the schema (skipped)

    def available(self) -> int:
        return load_acquire_u64(self._prod, 0) - load_acquire_u64(self._cons, 0)

    def drain(self, decode: Decoder | None, out: list[Event], raw: list[bytes] | None) -> int:
        """Decode (or copy) every committed record, then release them. Returns the
        number of rtcap records (a ring record holds a batch of them)."""
        # Ordered as the kernel producer requires (see ringmem): producer_pos and each
        # record header by acquire loads, consumer_pos by a release store.
        cons = load_acquire_u64(self._cons, 0)
        prod = load_acquire_u64(self._prod, 0)
        data, mask, n = self.data, self.mask, 0
        unpack_u32 = _U32.unpack_from
        dec = decode.decode if decode is not None else None
        batch = decode.decode_into if decode is not None and raw is None else None
        cons_map = self._cons
        while cons < prod:
            off = cons & mask
            hdr = load_acquire_u32(data, off)
            if hdr & _RB_BUSY:
                break
            length = hdr & ~(_RB_BUSY | _RB_DISCARD)
            if not hdr & _RB_DISCARD:
                pos, end = off + _RB_HDR, off + _RB_HDR + length
                if batch is not None:
                    # The whole ring record in one call; a record it cannot frame or
                    # decode sends the batch to the per-record loop below, which skips
                    # and counts exactly what it cannot use.
                    before = len(out)
                    try:
                        stop = batch(data, pos, end, out)
                    except DecodeError:
                        stop = -1
                    if stop == end:
                        n += len(out) - before
                        pos = end
                    else:
                        del out[before:]
                while pos < end:
                    rec_len = unpack_u32(data, pos + _LEN_AT)[0]
                    if rec_len < _schema.HDR_SIZE or pos + rec_len > end:
                        # The rest of this batch cannot be framed: skip it rather
                        # than stall the ring on it.
                        self.decode_errors += 1
                        break
                    if raw is not None:
                        raw.append(bytes(data[pos : pos + rec_len]))
                    if dec is not None:
                        try:
                            out.append(dec(data, pos))
                        except DecodeError:
                            self.decode_errors += 1
                    n += 1
                    pos += (rec_len + 7) & ~7
            cons += (length + _RB_HDR + 7) & ~7
            # Released record by record: the probe can refill the space while we decode
            # the next one.
            store_release_u64(cons_map, 0, cons)
        return n

    def wait(self, timeout_ms: int) -> None:
        self._epoll.poll(max(timeout_ms, 0) / 1000.0)

    def close(self) -> None:
        self._epoll.close()
        self.data.release()
        self._prod.close()
        self._cons.close()


class StageView:
    """Read-only view of the probe's per-CPU stages (an mmap'able array map), so
    userspace can tell which CPUs hold a batch, and since when, without a syscall."""

    def __init__(self, map_fd: int, value_size: int, ncpus: int) -> None:
        self.stride = (value_size + 7) & ~7
        self.ncpus = ncpus
        length = -(-self.stride * ncpus // mmap.PAGESIZE) * mmap.PAGESIZE
        self._map = mmap.mmap(map_fd, length, mmap.MAP_SHARED, mmap.PROT_READ)

    def waiting(self, older_than_ns: int) -> list[int]:
        """CPUs whose staged batch started more than older_than_ns ago (boot clock)."""
        now = boot_clock_ns()
        cpus = []
        for cpu in range(self.ncpus):
            first_ts, _pend, nevts = _STAGE_HEAD.unpack_from(self._map, cpu * self.stride)
            if nevts and now - first_ts >= older_than_ns:
                cpus.append(cpu)
        return cpus

    def complete_before(self) -> int:
        """A boot-clock time before which every record has left the stages: now, or the
        oldest staged batch's first record if one is waiting. Taken before a ring drain,
        it says what that drain completes (see ProbeSource.complete_before_ns)."""
        oldest = boot_clock_ns()
        for cpu in range(self.ncpus):
            first_ts, _pend, nevts = _STAGE_HEAD.unpack_from(self._map, cpu * self.stride)
            if nevts and first_ts < oldest:
                oldest = first_ts
        return oldest

    def close(self) -> None:
        self._map.close()


class ProbeSource:
    """An rtcap eBPF probe on this host. See runtime/driver/__init__.py for the API.

    Batching: each CPU stages up to `batch_bytes` of records (0 = one ring record per
    event) and outputs them at once; a batch also goes out at the next record once its
    oldest waited `batch_age_us`, and poll() pushes out a quiet CPU's batch once it
    waited `flush_after_ms`, so an event reaches the consumer within about
    flush_after_ms of happening as long as poll() is being called. Stats count a staged
    record as delivered (it can only still be dropped, and then is counted so);
    set_capture(False) flushes every stage.
    """

    def __init__(
        self,
        obj_path: str | os.PathLike[str],
        syscalls: Iterable[str],
        ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES,
        *,
        ignore_self: bool = True,
        wakeup_every: int = 1024,
        count_filtered: bool = True,
        arch: str | None = None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        batch_age_us: int = DEFAULT_BATCH_AGE_US,
        flush_after_ms: int = DEFAULT_FLUSH_AFTER_MS,
        epoch_offset_ns: int | None = None,
    ) -> None:
        self.obj_path = Path(obj_path)
        self.arch = arch or machine_arch()
        self.syscalls = frozenset(syscalls)
        self._filter, self._need_enter, self._procexit = resolve_filter(self.syscalls, self.arch)
        page = mmap.PAGESIZE
        if ringbuf_bytes < page or ringbuf_bytes & (ringbuf_bytes - 1):
            raise ProbeConfigError(
                f"ringbuf_bytes={ringbuf_bytes}: must be a power of two of at least {page}"
            )
        if wakeup_every < 0 or (wakeup_every and wakeup_every & (wakeup_every - 1)):
            raise ProbeConfigError(f"wakeup_every={wakeup_every}: use 0 or a power of two")
        if not 0 <= batch_bytes <= STAGE_BYTES_MAX:
            raise ProbeConfigError(
                f"batch_bytes={batch_bytes}: use 0 (no batching) to {STAGE_BYTES_MAX}"
            )
        if not 0 <= batch_age_us < 1 << 32 or flush_after_ms < 1:
            raise ProbeConfigError(
                f"batch_age_us={batch_age_us}, flush_after_ms={flush_after_ms}: "
                "use batch_age_us >= 0 and flush_after_ms >= 1"
            )
        self.ringbuf_bytes = ringbuf_bytes
        # A batch is one ring record: keep several of them fitting in the ring, or a
        # small ring would refuse every batch.
        self.batch_bytes = min(batch_bytes, ringbuf_bytes // 4)
        self.batch_age_us = batch_age_us
        self.flush_after_ms = flush_after_ms
        self.ignore_self = ignore_self
        self.wakeup_every = wakeup_every
        self.count_filtered = count_filtered
        # None: this host's offset now (schema.boot_to_epoch_ns); a caller that also
        # records the offset passes the one it recorded.
        self.decoder = Decoder(self.arch, epoch_offset_ns)
        self._obj: int | None = None
        self._links: list[int] = []
        self._ring: RingReader | None = None
        self._stages: StageView | None = None
        self._flush_fd = -1
        self._next_flush_check = 0.0
        self.flushes = 0  # batches pushed out from userspace (quiet CPUs)
        # Boot-clock time before which every record has been handed out by poll() (bar
        # one a program is writing at this instant); None where nothing is staged
        # because batching is off, or where a staged batch cannot be pushed out.
        self.complete_before_ns: int | None = None
        self._ctl_fd = self._stats_fd = -1
        self._capture = False
        self._ncpus = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Open, check the schema, size the maps, load, set the filter, attach."""
        if self._obj is not None:
            return
        if not self.obj_path.is_file():
            raise DriverError(
                f"probe object {self.obj_path} not found: build it with make -C driver"
            )
        L = lb.lib()
        with lb.LogCapture() as log:
            obj = L.bpf_object__open_file(os.fsencode(self.obj_path), None)
            if not obj:
                raise lb.errno_error(f"opening {self.obj_path}")
            self._obj = obj
            try:
                self._check_schema(L, obj)
                self._size_maps(L, obj)
                rc = L.bpf_object__load(obj)
                if rc:
                    raise DriverError(
                        f"loading {self.obj_path} failed ({os.strerror(-rc)}); libbpf said:\n"
                        + log.tail()
                    )
                self._ctl_fd = L.bpf_map__fd(self._map(L, obj, MAP_CTL))
                self._stats_fd = L.bpf_map__fd(self._map(L, obj, MAP_STATS))
                ring_fd = L.bpf_map__fd(self._map(L, obj, MAP_RINGBUF))
                self._ring = RingReader(ring_fd, self.ringbuf_bytes)
                stage = self._map(L, obj, MAP_STAGE)
                self._stages = StageView(
                    L.bpf_map__fd(stage), L.bpf_map__value_size(stage), self._ncpus
                )
                flush_prog = L.bpf_object__find_program_by_name(obj, PROG_FLUSH.encode())
                if not flush_prog:
                    raise DriverError(f"program {PROG_FLUSH} missing from {self.obj_path}")
                self._flush_fd = L.bpf_program__fd(flush_prog)
                self._check_flush_support()
                self._capture = True
                self._write_ctl()
                self._attach(L, obj, log)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Detach, unmap and free everything; safe to call twice."""
        L = lb.lib()
        for link in self._links:
            L.bpf_link__destroy(link)
        self._links.clear()
        if self._stages is not None:
            self._stages.close()
            self._stages = None
        self._flush_fd = -1
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._obj is not None:
            L.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> ProbeSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- consuming ---------------------------------------------------------------------
    def poll(self, timeout_ms: int = 100) -> list[Event]:
        """Events available now, or after waiting up to timeout_ms for some."""
        out: list[Event] = []
        self._read(self.decoder, out, None, timeout_ms)
        return out

    def poll_raw(self, timeout_ms: int = 100) -> list[bytes]:
        """Like poll() but the undecoded records (for capture files)."""
        raw: list[bytes] = []
        self._read(None, [], raw, timeout_ms)
        return raw

    def flush(self, older_than_ms: int = 0) -> int:
        """Push out the batches staged on every CPU (those waiting longer than
        older_than_ms); returns how many CPUs were flushed. poll() calls it on its own
        so a quiet CPU's events arrive within about flush_after_ms."""
        if self._stages is None:
            raise DriverError("probe not started: call start() first")
        if self._flush_fd < 0:
            return 0  # no batching on this kernel: nothing is ever staged
        done = 0
        for cpu in self._stages.waiting(older_than_ms * 1_000_000):
            # retval 1: the IPI landed while a producer was mid-record on that CPU.
            # That lasts well under a microsecond, so try again a few times.
            for _ in range(_FLUSH_TRIES):
                retval = self._run_flush(cpu)
                if retval != 1:
                    done += retval == 0
                    break
        self.flushes += done
        return done

    def _check_flush_support(self) -> None:
        """Kernels before 5.10 cannot run a raw tracepoint program on a chosen CPU, so
        a quiet CPU's batch could not be pushed out: there, every record goes out on
        its own (batch_bytes 0), as it did before batching."""
        assert self._flush_fd >= 0
        opts = lb.TestRunOpts(
            sz=ctypes.sizeof(lb.TestRunOpts), flags=lb.BPF_F_TEST_RUN_ON_CPU,
            cpu=min(os.sched_getaffinity(0)),
        )
        rc = lb.lib().bpf_prog_test_run_opts(self._flush_fd, ctypes.byref(opts))
        if rc in (-errno.EINVAL, -errno.ENOTSUP, -errno.EOPNOTSUPP, -524):  # 524: ENOTSUPP
            self.batch_bytes = 0
            self._flush_fd = -1
        elif rc:
            raise lb.errno_error(f"running {PROG_FLUSH}", rc)

    def _run_flush(self, cpu: int) -> int:
        """Run the flush program on `cpu`: its return value, or -1 if that CPU is offline
        (its batch then goes out when it is back and records again)."""
        assert self._flush_fd >= 0
        opts = lb.TestRunOpts(
            sz=ctypes.sizeof(lb.TestRunOpts), flags=lb.BPF_F_TEST_RUN_ON_CPU, cpu=cpu
        )
        rc = lb.lib().bpf_prog_test_run_opts(self._flush_fd, ctypes.byref(opts))
        if rc == -errno.ENXIO:
            return -1
        if rc:
            raise lb.errno_error(f"running {PROG_FLUSH} on CPU {cpu}", rc)
        return int(opts.retval)

    def _flush_quiet_cpus(self) -> bool:
        now = time.monotonic()
        if now < self._next_flush_check:
            return False
        self._next_flush_check = now + self.flush_after_ms / 2000
        return self.flush(self.flush_after_ms) > 0

    def _read(
        self, decoder: Decoder | None, out: list[Event], raw: list[bytes] | None,
        timeout_ms: int,
    ) -> None:
        self._flush_quiet_cpus()
        if self._drain(decoder, out, raw):
            return
        deadline = time.monotonic() + max(timeout_ms, 0) / 1000
        while True:
            if self._flush_quiet_cpus() and self._drain(decoder, out, raw):
                return
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return
            # wake up in time to flush quiet CPUs: their batches wake nobody
            self._require_ring().wait(min(left_ms, self.flush_after_ms))
            if self._drain(decoder, out, raw):
                return

    def _drain(self, decoder: Decoder | None, out: list[Event], raw: list[bytes] | None,
               ) -> int:
        """One ring drain, and what it completes. The stages are looked at first: a
        record stamped before that moment was then either staged (the oldest staged one
        bounds the mark) or already in the ring, which the drain reads to its end. A
        consumer that is starved between a flush and the drain, or after it, thus never
        takes a quiet CPU's batch as complete; a time-based guess would (issue #11)."""
        ring = self._require_ring()
        stages = self._stages
        mark = stages.complete_before() if stages is not None and self._flush_fd >= 0 \
            else None
        count = ring.drain(decoder, out, raw)
        self.complete_before_ns = mark
        return count

    def pending_bytes(self) -> int:
        return self._require_ring().available()

    @property
    def decode_errors(self) -> int:
        """Records skipped because they did not decode (0 unless something is broken)."""
        return self._ring.decode_errors if self._ring is not None else 0

    # -- control -----------------------------------------------------------------------
    def set_capture(self, on: bool) -> None:
        """Turning capture off also pushes out every staged batch, so from then on the
        emission counters are final and everything emitted is in the ring."""
        self._capture = on
        self._write_ctl()
        if not on and self._stages is not None:
            self.flush()

    def set_syscalls(self, syscalls: Iterable[str]) -> None:
        """Change the in-kernel filter while running (enter/procexit hooks as at start)."""
        self.syscalls = frozenset(syscalls)
        self._filter, need_enter, procexit = resolve_filter(self.syscalls, self.arch)
        if (need_enter and not self._need_enter) or (procexit and not self._procexit):
            raise ProbeConfigError("exit/exit_group/procexit must be requested at start()")
        self._write_ctl()

    def stats(self) -> list[CpuStats]:
        """Per-CPU counters, readable at any time while started."""
        if self._stats_fd < 0:
            raise DriverError("probe not started")
        stride = (_STATS.size + 7) & ~7
        buf = ctypes.create_string_buffer(stride * self._ncpus)
        key = ctypes.c_uint32(0)
        rc = lb.lib().bpf_map_lookup_elem(self._stats_fd, ctypes.byref(key), buf)
        if rc:
            raise lb.errno_error("reading the stats map", rc)
        raw = buf.raw
        return [CpuStats(cpu, *_STATS.unpack_from(raw, cpu * stride)) for cpu in range(self._ncpus)]

    # -- internals ---------------------------------------------------------------------
    def _require_ring(self) -> RingReader:
        if self._ring is None:
            raise DriverError("probe not started: call start() first")
        return self._ring

    @staticmethod
    def _map(L: ctypes.CDLL, obj: int, name: str) -> int:
        m = L.bpf_object__find_map_by_name(obj, name.encode())
        if not m:
            raise DriverError(f"map {name} missing from the probe object: not an rtcap probe?")
        return int(m)  # ctypes gives c_void_p results as int

    def _check_schema(self, L: ctypes.CDLL, obj: int) -> None:
        size = ctypes.c_size_t(0)
        ptr = L.bpf_map__initial_value(self._map(L, obj, MAP_META), ctypes.byref(size))
        if not ptr or size.value < 8:
            raise SchemaMismatchError(f"{self.obj_path}: no schema hash in the object")
        found = ctypes.c_uint64.from_address(ptr).value
        if found != _schema.SCHEMA_HASH:
            raise SchemaMismatchError(
                f"{self.obj_path} was built for schema {found:#018x}, this decoder speaks "
                f"{_schema.SCHEMA_HASH:#018x}: rebuild the probe from this source tree"
            )

    def _size_maps(self, L: ctypes.CDLL, obj: int) -> None:
        self._ncpus = L.libbpf_num_possible_cpus()
        if self._ncpus <= 0:
            raise lb.errno_error("counting possible CPUs", self._ncpus)
        for name, entries in (
            (MAP_RINGBUF, self.ringbuf_bytes),
            (MAP_SCRATCH, self._ncpus),
            (MAP_STAGE, self._ncpus),
        ):
            rc = L.bpf_map__set_max_entries(self._map(L, obj, name), entries)
            if rc:
                raise lb.errno_error(f"sizing map {name} to {entries}", rc)
        if L.bpf_map__value_size(self._map(L, obj, MAP_CTL)) != CTL_SIZE:
            raise SchemaMismatchError(
                f"{self.obj_path}: control block size differs from {CTL_SIZE}"
            )

    def _write_ctl(self) -> None:
        if self._ctl_fd < 0:
            return
        tail = _CTL_TAIL.pack(
            1 if self._capture else 0,
            os.getpid() if self.ignore_self else 0,
            self.wakeup_every - 1 if self.wakeup_every else 0,
            1 if self._procexit else 0,
            1 if self.count_filtered else 0,
            self.ringbuf_bytes // 8,
            self.batch_bytes,
            self.batch_age_us,
        )
        value = ctypes.create_string_buffer(self._filter + tail, CTL_SIZE)
        key = ctypes.c_uint32(0)
        rc = lb.lib().bpf_map_update_elem(self._ctl_fd, ctypes.byref(key), value, 0)
        if rc:
            raise lb.errno_error("writing the probe control block", rc)

    def _attach(self, L: ctypes.CDLL, obj: int, log: lb.LogCapture) -> None:
        wanted = [PROG_SYS_EXIT]
        if self._need_enter:
            wanted.append(PROG_SYS_ENTER)
        if self._procexit:
            wanted.append(PROG_PROCEXIT)
        for name in wanted:
            prog = L.bpf_object__find_program_by_name(obj, name.encode())
            if not prog:
                raise DriverError(f"program {name} missing from {self.obj_path}")
            link = L.bpf_program__attach(prog)
            if not link:
                err = lb.errno_error(f"attaching {name}")
                raise DriverError(f"{err}; libbpf said:\n{log.tail()}")
            self._links.append(int(link))


# The CO-RE and the per-kernel objects load the same way.
CoreProbeSource = ProbeSource
