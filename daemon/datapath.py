"""Compile and load ebpf/datapath.bpf.c with BCC; read its maps into numpy.

The C source is package data loaded from an absolute path with `-I` for its
header; knobs are `-D` cflags.  `anabranchd --dump-ebpf` prints the source, the
cflags and the header it would compile.
"""

from __future__ import annotations

import ctypes as ct
import errno
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from . import kstructs

log = logging.getLogger(__name__)

SOURCE = "datapath.bpf.c"
HEADER = "datapath.h"


def source_dir() -> Path:
    return Path(str(resources.files("anabranch.ebpf")))


@dataclass(frozen=True)
class BuildOptions:
    flow_map_size: int = 65536

    def cflags(self) -> list[str]:
        return [f"-I{source_dir()}", f"-DAB_FLOW_MAP_SIZE={self.flow_map_size}",
                # BCC's own headers warn about things the kernel's UAPI does; keep the log clean.
                "-Wno-macro-redefined"]


def dump(options: BuildOptions) -> str:
    """What would be compiled: cflags, the program and its header."""
    directory = source_dir()
    return "\n".join([
        f"// source: {directory / SOURCE}",
        f"// cflags: {' '.join(options.cflags())}",
        f"// ---- {HEADER}",
        (directory / HEADER).read_text(),
        f"// ---- {SOURCE}",
        (directory / SOURCE).read_text(),
    ])


class MapSweepError(OSError):
    pass


def _libbpf_batch():
    from bcc.libbcc import lib  # Debian's python3-bpfcc
    return lib.bpf_lookup_batch


def sweep_map(fd: int, capacity: int, key_dtype: np.dtype, value_dtype: np.dtype,
              chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Read every entry of a hash map with BPF_MAP_LOOKUP_BATCH into numpy arrays.

    Entries change while we read (the kernel keeps counting); each entry is read
    atomically per bucket, which is all the deltas need.
    """
    lookup_batch = _libbpf_batch()
    keys = np.empty(capacity, dtype=key_dtype)
    values = np.empty(capacity, dtype=value_dtype)
    in_batch = ct.c_uint32(0)
    out_batch = ct.c_uint32(0)
    count = ct.c_uint32(0)
    total = 0
    first = True
    while total < capacity:
        want = min(chunk, capacity - total)
        count.value = want
        rc = lookup_batch(
            fd,
            None if first else ct.byref(in_batch),
            ct.byref(out_batch),
            ct.c_void_p(keys.ctypes.data + total * key_dtype.itemsize),
            ct.c_void_p(values.ctypes.data + total * value_dtype.itemsize),
            ct.byref(count),
        )
        err = ct.get_errno()
        total += count.value
        if rc != 0:
            if err == errno.ENOENT:
                break  # walked every bucket
            if err == errno.ENOSPC and want < capacity - total + count.value:
                # One bucket holds more entries than this chunk: retry bigger.
                chunk *= 2
                continue
            raise MapSweepError(err, f"BPF_MAP_LOOKUP_BATCH failed: {os.strerror(err)}")
        first = False
        in_batch.value = out_batch.value
    return keys[:total], values[:total]


class Datapath:
    """The compiled program, its two tc entry points and its maps."""

    def __init__(self, options: BuildOptions = BuildOptions()):
        from bcc import BPF  # imported here: only the daemon (root) loads BCC

        self.options = options
        directory = source_dir()
        log.info("compiling %s (flow map %d entries)", directory / SOURCE, options.flow_map_size)
        self.bpf = BPF(src_file=str(directory / SOURCE).encode(),
                       cflags=options.cflags())
        self.ingress = self.bpf.load_func(b"ab_ingress", BPF.SCHED_CLS)
        self.egress = self.bpf.load_func(b"ab_egress", BPF.SCHED_CLS)
        self.flows = self.bpf[b"flows"]
        self.ports = self.bpf[b"ports"]
        self.errors = self.bpf[b"errors"]

    @property
    def program_fds(self) -> dict[str, int]:
        return {"ingress": self.ingress.fd, "egress": self.egress.fd}

    def set_port(self, ifindex: int, role: int, flags: int) -> None:
        key = self.ports.Key(ifindex)
        leaf = self.ports.Leaf()
        leaf.role = role
        leaf.flags = flags
        self.ports[key] = leaf

    def clear_port(self, ifindex: int) -> None:
        try:
            del self.ports[self.ports.Key(ifindex)]
        except KeyError:
            pass

    def sweep_flows(self) -> tuple[np.ndarray, np.ndarray]:
        return sweep_map(self.flows.get_fd(), self.options.flow_map_size,
                         kstructs.FLOW_KEY, kstructs.FLOW)

    def delete_flows(self, keys: np.ndarray) -> int:
        """Forget idle flows in one syscall (the LRU would evict them, but later)."""
        from bcc.libbcc import lib

        if len(keys) == 0:
            return 0
        keys = np.ascontiguousarray(keys, dtype=kstructs.FLOW_KEY)
        deleted = start = 0
        while start < len(keys):
            count = ct.c_uint32(len(keys) - start)
            address = keys.ctypes.data + start * kstructs.FLOW_KEY.itemsize
            rc = lib.bpf_delete_batch(self.flows.get_fd(), ct.c_void_p(address), ct.byref(count))
            err = ct.get_errno()
            deleted += count.value
            if rc == 0:
                break
            if err != errno.ENOENT:
                log.warning("deleting idle flows stopped after %d: %s", deleted, os.strerror(err))
                break
            # That key was already evicted by the LRU: skip it and go on.
            start += count.value + 1
        return deleted

    def error_counts(self) -> dict[str, int]:
        totals = {}
        for index, name in enumerate(kstructs.ERRORS):
            per_cpu = self.errors[self.errors.Key(index)]
            totals[name] = int(sum(per_cpu))
        return totals

    def close(self) -> None:
        self.bpf.cleanup()
