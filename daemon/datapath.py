"""Compile and load ebpf/datapath.bpf.c with BCC; read its maps into numpy.

The C source is package data loaded from an absolute path with `-I` for its
header; knobs are `-D` cflags.  `anabranchd --dump-ebpf` prints the source, the
cflags and the header it would compile.
"""

from __future__ import annotations

import ctypes as ct
import logging
import mmap
import os
import secrets
import time
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from . import kstructs

log = logging.getLogger(__name__)

_KEY_BYTES = np.dtype((np.void, kstructs.FLOW_KEY.itemsize))  # keys compared as bytes

SOURCE = "datapath.bpf.c"
HEADER = "datapath.h"


def source_dir() -> Path:
    return Path(str(resources.files("anabranch.ebpf")))


@dataclass(frozen=True)
class BuildOptions:
    flow_map_size: int = 65536
    snippet_size: int = kstructs.SNIPPET_SIZE   # a power of two
    event_pages: int = 256                       # ring buffer pages, a power of two
    # Ports with an ifindex below this are in an array, the rest in a hash.
    port_index_size: int = kstructs.PORT_INDEX_SIZE
    # Offline analysis: "now" is skb->tstamp (the capture time passed to
    # BPF_PROG_TEST_RUN) instead of the monotonic clock.
    clock_from_skb: bool = False
    # Benchmarks compare builds: another copy of ebpf/, and extra -D macros.
    directory: Path | None = None
    defines: tuple[str, ...] = ()
    # The flow table's hash seed; None = a random one per load (see AB_FLOW_SEED).
    flow_seed: int | None = None

    @property
    def flow_slots(self) -> int:
        return kstructs.flow_slots(self.flow_map_size)

    def source(self) -> Path:
        return self.directory or source_dir()

    def cflags(self) -> list[str]:
        flags = [f"-I{self.source()}", f"-DAB_FLOW_MAP_SIZE={self.flow_slots}",
                 f"-DAB_SNIPPET_SIZE={self.snippet_size}", f"-DAB_EVENT_PAGES={self.event_pages}",
                 f"-DAB_PORT_INDEX_SIZE={self.port_index_size}",
                 # BCC's own headers warn about things the kernel's UAPI does; keep the log clean.
                 "-Wno-macro-redefined"]
        if self.clock_from_skb:
            flags.append("-DAB_CLOCK_SKB_TSTAMP")
        if self.flow_seed is not None:
            flags.append(f"-DAB_FLOW_SEED={self.flow_seed:#x}ULL")
        return flags + [f"-D{name}" for name in self.defines]


def dump(options: BuildOptions) -> str:
    """What would be compiled: cflags, the program and its header."""
    directory = options.source()
    return "\n".join([
        f"// source: {directory / SOURCE}",
        f"// cflags: {' '.join(options.cflags())}",
        f"// ---- {HEADER}",
        (directory / HEADER).read_text(),
        f"// ---- {SOURCE}",
        (directory / SOURCE).read_text(),
    ])


# bpf(2) commands and attribute layouts used directly (BCC wraps neither).
_SYS_BPF = 321  # x86_64
_BPF_PROG_TEST_RUN = 10
_BPF_ENABLE_STATS = 32
_BPF_STATS_RUN_TIME = 0
_SKB_CTX_SIZE = 192              # sizeof(struct __sk_buff)
_SKB_PRIORITY, _SKB_IFINDEX, _SKB_TSTAMP = 32, 40, 152
_PROG_INFO_SIZE = 232
_PROG_RUN_TIME_NS, _PROG_RUN_CNT = 192, 200


class _TestRunAttr(ct.Structure):
    _fields_ = [("prog_fd", ct.c_uint32), ("retval", ct.c_uint32),
                ("data_size_in", ct.c_uint32), ("data_size_out", ct.c_uint32),
                ("data_in", ct.c_uint64), ("data_out", ct.c_uint64),
                ("repeat", ct.c_uint32), ("duration", ct.c_uint32),
                ("ctx_size_in", ct.c_uint32), ("ctx_size_out", ct.c_uint32),
                ("ctx_in", ct.c_uint64), ("ctx_out", ct.c_uint64),
                ("flags", ct.c_uint32), ("cpu", ct.c_uint32), ("batch_size", ct.c_uint32),
                ("pad", ct.c_uint32)]


_libc = ct.CDLL(None, use_errno=True)
_libc.syscall.restype = ct.c_long


@dataclass
class TestRunResult:
    retval: int
    frame: bytes        # the packet as the program left it
    priority: int       # skb->priority after the program
    duration_ns: int = 0  # mean run time per repeat, as the kernel measured it


class TestRunner:
    """Push frames through a loaded tc program with BPF_PROG_TEST_RUN (no network)."""

    def __init__(self, prog_fd: int, max_frame: int = 65535 + 64):
        self.prog_fd = prog_fd
        self._out = ct.create_string_buffer(max_frame + 256)
        self._ctx_in = ct.create_string_buffer(_SKB_CTX_SIZE)
        self._ctx_out = ct.create_string_buffer(_SKB_CTX_SIZE)
        self._attr = _TestRunAttr()

    def run(self, frame: bytes, tstamp_ns: int = 0, ifindex: int = 1, priority: int = 0,
            repeat: int = 1) -> TestRunResult:
        ct.memset(self._ctx_in, 0, _SKB_CTX_SIZE)
        ct.c_uint32.from_buffer(self._ctx_in, _SKB_PRIORITY).value = priority
        # ifindex 1 is the loopback device, which the kernel accepts without a lookup.
        ct.c_uint32.from_buffer(self._ctx_in, _SKB_IFINDEX).value = ifindex
        ct.c_uint64.from_buffer(self._ctx_in, _SKB_TSTAMP).value = tstamp_ns
        data = ct.create_string_buffer(bytes(frame), len(frame))
        attr = self._attr
        ct.memset(ct.byref(attr), 0, ct.sizeof(attr))
        attr.prog_fd = self.prog_fd
        attr.data_size_in = len(frame)
        attr.data_in = ct.addressof(data)
        attr.data_size_out = len(self._out)
        attr.data_out = ct.addressof(self._out)
        attr.repeat = repeat
        attr.ctx_size_in = _SKB_CTX_SIZE
        attr.ctx_in = ct.addressof(self._ctx_in)
        attr.ctx_size_out = _SKB_CTX_SIZE
        attr.ctx_out = ct.addressof(self._ctx_out)
        rc = _libc.syscall(_SYS_BPF, _BPF_PROG_TEST_RUN, ct.byref(attr), ct.sizeof(attr))
        if rc < 0:
            err = ct.get_errno()
            raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
        return TestRunResult(retval=attr.retval, frame=self._out.raw[:attr.data_size_out],
                             priority=ct.c_uint32.from_buffer(self._ctx_out, _SKB_PRIORITY).value,
                             duration_ns=attr.duration)


# CONFIG_HZ choices on the architectures Debian builds for.
KERNEL_HZ = (100, 250, 300, 1000)


def jiffies_calibration(sample: Callable[[], tuple[int, int]],
                        sleep: Callable[[float], None] = time.sleep) -> tuple[int, int] | None:
    """(jiffy_ns, jiffies_base_ns) such that CLOCK_MONOTONIC at the start of jiffy j
    is jiffies_base_ns + j * jiffy_ns, from `sample()` = (jiffies, CLOCK_MONOTONIC ns)
    read in that order; None when jiffies advance at no rate a kernel is built with.

    The kernel advances jiffies by exactly one TICK_NSEC of CLOCK_MONOTONIC, so the
    rate (two samples 0.2 s apart, snapped to a CONFIG_HZ) gives the scale, and the
    base is the least `t - j * jiffy_ns` of samples spread over two ticks: each was
    read after its jiffy began (or later, where an idle CPU updated jiffies late)."""
    j1, t1 = sample()
    sleep(0.2)
    j2, t2 = sample()
    if t2 <= t1:
        return None
    rate = (j2 - j1) * 1e9 / (t2 - t1)
    hz = min(KERNEL_HZ, key=lambda h: abs(h - rate))
    if abs(hz - rate) > 0.1 * hz:
        return None
    jiffy_ns = (1_000_000_000 + hz // 2) // hz  # the kernel's TICK_NSEC
    base = t2 - j2 * jiffy_ns
    t = t2
    while t < t2 + 2 * jiffy_ns:
        sleep(jiffy_ns / 16e9)
        j, t = sample()
        base = min(base, t - j * jiffy_ns)
    return jiffy_ns, base


def enable_bpf_stats() -> int | None:
    """Turn on the kernel's run-time statistics for as long as the returned fd is open."""
    attr = (ct.c_uint32 * 4)(_BPF_STATS_RUN_TIME)
    fd = _libc.syscall(_SYS_BPF, _BPF_ENABLE_STATS, ct.byref(attr), 16)
    if fd < 0:
        log.warning("BPF run-time statistics unavailable: %s", os.strerror(ct.get_errno()))
        return None
    return int(fd)


def program_stats(prog_fd: int) -> tuple[int, int]:
    """(run count, total run time in ns) of a program, from bpf_prog_info."""
    from bcc.libbcc import lib

    info = ct.create_string_buffer(_PROG_INFO_SIZE)
    size = ct.c_uint32(_PROG_INFO_SIZE)
    if lib.bpf_obj_get_info(prog_fd, info, ct.byref(size)) != 0:
        return 0, 0
    return (ct.c_uint64.from_buffer(info, _PROG_RUN_CNT).value,
            ct.c_uint64.from_buffer(info, _PROG_RUN_TIME_NS).value)


class Datapath:
    """The compiled program, its tc entry points, its maps and its ring buffer."""

    @staticmethod
    def entry_points(role: int, flags: int) -> dict[str, bytes]:
        """The entry point each hook of a port with this role and these flags
        (kstructs.PORT_*) runs: made for them, so the program never looks the port
        up (see the entry points in datapath.bpf.c)."""
        mark = bool(flags & kstructs.PORT_MARK)
        if role == kstructs.ROLE_WAN and mark:
            return {"ingress": b"ab_wan_ingress", "egress": b"ab_wan_egress"}
        if role == kstructs.ROLE_WAN and flags & kstructs.PORT_COUNT:
            return {"ingress": b"ab_wan_ingress_count", "egress": b"ab_wan_egress_count"}
        if role == kstructs.ROLE_LAN and mark:
            return {"ingress": b"ab_pass", "egress": b"ab_lan_egress"}
        return {"ingress": b"ab_pass", "egress": b"ab_pass"}

    def __init__(self, options: BuildOptions = BuildOptions()):
        from bcc import BPF  # imported here: only the daemon (root) loads BCC

        if options.flow_seed is None:
            options = dataclasses.replace(options, flow_seed=secrets.randbits(64))
        self.options = options
        directory = options.source()
        log.info("compiling %s (flow table of %d slots)", directory / SOURCE, options.flow_slots)
        self.bpf = BPF(src_file=str(directory / SOURCE).encode(), cflags=options.cflags())
        self.ingress = self.bpf.load_func(b"ab_ingress", BPF.SCHED_CLS)
        self.egress = self.bpf.load_func(b"ab_egress", BPF.SCHED_CLS)
        self.clock_probe = self.bpf.load_func(b"ab_clock_probe", BPF.SCHED_CLS)
        self.flows = self.bpf[b"flows"]
        self._table_map: mmap.mmap | None = None
        self._slots: np.ndarray | None = None
        self.ports = self.bpf[b"ports"]
        self.port_index = self.bpf[b"port_index"]
        self.errors = self.bpf[b"errors"]
        self.config = self.bpf[b"config"]
        self.classes = self.bpf[b"classes"]
        self.port_classes = self.bpf[b"port_classes"]
        self.dscp_priority = self.bpf[b"dscp_priority"]
        self.overrides = self.bpf[b"overrides"]
        self.tokens = self.bpf[b"tokens"]
        self.prefixes_v4 = self.bpf[b"prefixes_v4"]
        self.prefixes_v6 = self.bpf[b"prefixes_v6"]
        self.payload_dtype = kstructs.event_payload_dtype(options.snippet_size)
        self._pending_events: list[bytes] = []
        self._ring_open = False
        self.events_drained = 0
        # Per-port program copies: the kernel keeps run statistics per program,
        # so one copy per port and hook gives ns/packet per interface for free.
        # Per port: the (role, flags) the copies were loaded for, and their fds by hook.
        self.port_programs: dict[str, tuple[tuple[int, int], dict[str, int]]] = {}
        self._stats_fd: int | None = None
        self._sweep_buffers: list[np.ndarray | None] = [None, None]
        self._sweep_turn = 0
        if not options.clock_from_skb:
            self.calibrate_clock()

    @property
    def program_fds(self) -> dict[str, int]:
        return {"ingress": self.ingress.fd, "egress": self.egress.fd}

    def load_copy(self, name: bytes) -> int:
        """Another instance of one entry point (same maps), for per-port statistics."""
        from bcc import BPF
        from bcc.libbcc import lib

        module = self.bpf.module
        fd = lib.bcc_func_load(module, BPF.SCHED_CLS, name, lib.bpf_function_start(module, name),
                               lib.bpf_function_size(module, name), lib.bpf_module_license(module),
                               lib.bpf_module_kern_version(module), 0, None, 0, None, -1)
        if fd < 0:
            raise OSError(-fd, f"loading a copy of {name.decode()} failed")
        return fd

    def programs_for(self, port_name: str, role: int, flags: int) -> dict[str, int]:
        """The program fds (ingress, egress) a port of this role and these flags
        runs: its own copies of entry_points(role, flags)."""
        loaded = self.port_programs.get(port_name)
        if loaded is not None and loaded[0] == (role, flags):
            return loaded[1]
        if loaded is not None:
            self._close_copies(loaded[1])
        copies: dict[str, int] = {}
        try:
            for hook, name in self.entry_points(role, flags).items():
                copies[hook] = self.load_copy(name)
        except OSError as exc:
            log.warning("%s: %s; sharing the common program (no per-port statistics)", port_name, exc)
            self._close_copies(copies)
            copies = dict(self.program_fds)
        self.port_programs[port_name] = ((role, flags), copies)
        return copies

    def _close_copies(self, fds: dict[str, int]) -> None:
        for fd in set(fds.values()) - set(self.program_fds.values()):
            os.close(fd)

    def enable_stats(self) -> bool:
        if self._stats_fd is None:
            self._stats_fd = enable_bpf_stats()
        return self._stats_fd is not None

    def port_stats(self) -> dict[str, dict[str, int]]:
        """Per port: run count and run time (ns) summed over its two hooks."""
        result = {}
        for port_name, (_, fds) in self.port_programs.items():
            runs = run_ns = 0
            for fd in set(fds.values()):
                count, ns = program_stats(fd)
                runs += count
                run_ns += ns
            result[port_name] = {"runs": runs, "run_ns": run_ns}
        return result

    def calibrate_clock(self) -> None:
        """Give the program's per-packet clock its jiffies scale and base (see
        clock_coarse in the program); until then it reads the coarse clock."""
        runner = TestRunner(self.clock_probe.fd)
        probe = self.bpf[b"clock_probe"]
        frame = bytes(14)  # the probe reads no packet; the kernel wants an Ethernet header's worth

        def sample() -> tuple[int, int]:
            runner.run(frame)
            leaf = probe[probe.Key(0)]
            return int(leaf.jiffies), int(leaf.monotonic_ns)

        calibration = jiffies_calibration(sample)
        if calibration is None:
            log.warning("jiffies advance at no kernel tick rate; the datapath keeps the coarse clock")
            return
        leaf = self.config[self.config.Key(0)]
        leaf.jiffy_ns, leaf.jiffies_base_ns = calibration
        self.config[self.config.Key(0)] = leaf
        log.info("per-packet clock: jiffies at %d ns each", calibration[0])

    def set_port(self, ifindex: int, role: int, flags: int) -> None:
        # Small ifindexes (nearly all) live in the array the program reads
        # without hashing; the rest in the hash (AB_PORT_INDEX_SIZE in datapath.h).
        table = self.port_index if ifindex < self.options.port_index_size else self.ports
        leaf = table.Leaf()
        leaf.role = role
        leaf.flags = flags
        table[table.Key(ifindex)] = leaf

    def clear_port(self, ifindex: int) -> None:
        if ifindex < self.options.port_index_size:
            self.port_index[self.port_index.Key(ifindex)] = self.port_index.Leaf()  # role 0: no port
            return
        try:
            del self.ports[self.ports.Key(ifindex)]
        except KeyError:
            pass

    @property
    def slots(self) -> np.ndarray:
        """The flow table (struct ab_flow_slot), mapped on first use: sweeps read it in place."""
        if self._slots is None:
            slots = self.options.flow_slots
            length = -(-slots * kstructs.FLOW_SLOT.itemsize // mmap.PAGESIZE) * mmap.PAGESIZE
            self._table_map = mmap.mmap(self.flows.get_fd(), length, mmap.MAP_SHARED,
                                        mmap.PROT_READ | mmap.PROT_WRITE)
            self._slots = np.frombuffer(self._table_map, dtype=kstructs.FLOW_SLOT, count=slots)
        return self._slots

    def sweep_flows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live flow: (keys, values), strided views into one of two reused
        buffers (double-buffered: a sweep's arrays stay valid through the next
        sweep; copy to keep longer).

        Copied from the mapped table while the kernel goes on counting: each
        counter is read whole (aligned 8 bytes), which is all deltas need."""
        live = np.flatnonzero(self.slots["state"] == kstructs.SLOT_LIVE)
        self._sweep_turn ^= 1
        rows = self._sweep_buffers[self._sweep_turn]
        if rows is None or len(rows) < len(live):
            size = max(len(live), min(1024, self.options.flow_slots))
            rows = np.empty((size, kstructs.FLOW_SLOT.itemsize), np.uint8)
            self._sweep_buffers[self._sweep_turn] = rows
        # Whole slots as rows of bytes: numpy copies rows with memcpy, fields one by one.
        taken = rows[:len(live)]
        np.take(self.slots.view(np.uint8).reshape(len(self.slots), -1), live, axis=0, out=taken)
        slots = taken.view(kstructs.FLOW_SLOT)[:, 0]
        # A slot the kernel gave to a new flow while it was copied shows its
        # claim in the copy: that one is read next sweep, whole.
        whole = slots["state"] == kstructs.SLOT_LIVE
        if not whole.all():
            slots = slots[whole]
        return slots["key"], slots["flow"]

    def clear_flows(self) -> int:
        """Forget every flow (and any slot left claimed)."""
        taken = self.slots["state"] != kstructs.SLOT_EMPTY
        self.slots["state"][taken] = kstructs.SLOT_EMPTY
        return int(taken.sum())

    def delete_flows(self, keys: np.ndarray) -> int:
        """Forget these flows (idle ones; a new flow would take their slots anyway,
        but this frees them now): their slots become empty.  A key no slot holds
        is skipped.  A slot the kernel gives to a new flow between the check and
        the store is emptied too: that flow starts again at its next packet."""
        if len(keys) == 0:
            return 0
        keys = np.ascontiguousarray(keys, dtype=kstructs.FLOW_KEY)
        bases = kstructs.set_bases(keys, self.options.flow_seed, len(self.slots))
        candidates = (bases[:, :, None] + np.arange(kstructs.FLOW_WAYS)).reshape(len(keys), -1)
        held = self.slots[candidates]
        match = ((held["state"] == kstructs.SLOT_LIVE)
                 & (held["key"].view(_KEY_BYTES) == keys.view(_KEY_BYTES)[:, None]))
        # The state alone changes: one aligned 4-byte store per slot.
        emptied = np.unique(candidates[match])
        self.slots["state"][emptied] = kstructs.SLOT_EMPTY
        return len(emptied)

    def error_counts(self) -> dict[str, int]:
        totals = {}
        for index, name in enumerate(kstructs.ERRORS):
            per_cpu = self.errors[self.errors.Key(index)]
            totals[name] = int(sum(per_cpu))
        return totals

    # -- events -----------------------------------------------------------------
    def _on_event(self, ctx, data, size) -> int:
        self._pending_events.append(ct.string_at(data, size))
        return 0

    def drain_events(self) -> list[bytes]:
        """Every event in the ring buffer, raw (decode with anabranch.daemon.events)."""
        if not self._ring_open:
            self.bpf[b"events"].open_ring_buffer(self._on_event)
            self._ring_open = True
        self.bpf.ring_buffer_consume()
        drained, self._pending_events = self._pending_events, []
        self.events_drained += len(drained)
        return drained

    def test_runner(self, hook: str) -> TestRunner:
        return TestRunner(self.program_fds[hook])

    def close(self) -> None:
        self._slots = None
        self._sweep_buffers = [None, None]
        if self._table_map is not None:
            try:
                self._table_map.close()
            except BufferError:
                log.debug("a view of the flow table outlives the datapath; unmapped at exit")
        for _, fds in self.port_programs.values():
            self._close_copies(fds)
        self.port_programs.clear()
        if self._stats_fd is not None:
            os.close(self._stats_fd)
            self._stats_fd = None
        self.bpf.cleanup()
