"""Host side of the rtcap driver: decode its records and run its eBPF probes.

API (what the rt-engine calls)::

    from runtime.driver import ProbeSource, decode_events, total

    src = ProbeSource(obj_path, syscalls={"openat", "execve", "connect", "procexit"},
                      ringbuf_bytes=8 << 20)     # power of two >= page size
    src.start()                  # load (schema hash checked), set filter, attach
    events = src.poll(timeout_ms=100)        # list[runtime.events.Event], may be []
    raw = src.poll_raw(timeout_ms=100)       # list[bytes] records, for capture files
    per_cpu = src.stats()        # list[CpuStats]; total(per_cpu) sums them
    src.set_syscalls({...})      # change the in-kernel filter while running
    src.set_capture(False)       # stop emitting (filter still counts)
    src.close()                  # detach and free; also `with ProbeSource(...) as src:`

    decode_events(buf, arch=None, epoch_offset_ns=None) -> list[Event]
        # back-to-back records at 8-byte aligned offsets (module device, capture replay)
    frame_records(src.poll_raw()) -> bytes   # that stream layout, for a capture file;
        # store src.decoder.epoch_offset_ns with it: records carry CLOCK_BOOTTIME stamps
    Decoder(arch, epoch_offset_ns).decode(buf, off) -> Event   # one record

`ProbeSource` loads the CO-RE object (`rtcap_core.o`) and per-kernel objects alike;
`CoreProbeSource` is the same class. `syscalls` are names from the arch's syscall table
(`runtime.driver.schema.syscall_table()`), plus `procexit` for process exit events.
Syscalls with a decoded event get Falco's parameter names in `Event.params` (connect's
and accept's `tuple` is a `runtime.events.SocketTuple`; `str()` of it is Falco's text);
any other syscall in the set yields a generic event (`Event.raw_args` = its 6 raw
arguments). Record stamps are CLOCK_BOOTTIME: a Decoder (and ProbeSource) adds
`epoch_offset_ns` to them, by default `schema.boot_to_epoch_ns()`, the one place that
offset is computed.
By default the consumer's own process is ignored (`ignore_self=True`), counted in
`n_ignored_self`. Stats: `n_evts == delivered + n_drops_buffer + n_drops_pf + n_drops_bug`.
Errors are `runtime.driver.errors.DriverError` subclasses.
"""

from __future__ import annotations

from runtime.driver.probe import CoreProbeSource, CpuStats, ProbeSource, total
from runtime.driver.schema import DecodeError, Decoder, decode_events, frame_records

__all__ = [
    "CoreProbeSource",
    "CpuStats",
    "DecodeError",
    "Decoder",
    "ProbeSource",
    "decode_events",
    "frame_records",
    "total",
]
