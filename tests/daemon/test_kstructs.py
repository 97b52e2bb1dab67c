"""kstructs (the one Python view of datapath.h) agrees with what BCC compiled (root)."""

from __future__ import annotations

import ctypes as ct
import sys
from pathlib import Path

import numpy as np
import pytest

from anabranch.daemon import kstructs

pytestmark = pytest.mark.root

# map name -> (key dtype, value dtype) as kstructs declares them
MAPS = {
    "flows": (None, kstructs.FLOW_SLOT),
    "ports": (None, kstructs.PORT),
    "port_index": (None, kstructs.PORT),
    "config": (None, kstructs.CONFIG),
    "classes": (None, kstructs.CLASS),
    "port_classes": (None, kstructs.PORT_CLASS),
    "overrides": (kstructs.FLOW_KEY, kstructs.CLASS_RULE),
    "tokens": (None, kstructs.CLASS_RULE),
    "prefixes_v4": (kstructs.PREFIX_V4, kstructs.CLASS_RULE),
    "prefixes_v6": (kstructs.PREFIX_V6, kstructs.CLASS_RULE),
}


def _layout(ctype) -> dict[str, tuple[int, int]]:
    """Field -> (offset, size), nested structs and arrays of structs flattened;
    the members of an anonymous struct or union named as the C code names them."""
    fields = {}
    for name, ftype, *_ in ctype._fields_:
        offset = getattr(ctype, name).offset
        anonymous = name.startswith("__anon")
        if not anonymous:
            fields[name] = (offset, ct.sizeof(ftype))
        inner = ftype
        if issubclass(ftype, ct.Array):
            inner = ftype._type_
        if issubclass(inner, (ct.Structure, ct.Union)):
            for sub, (sub_off, sub_size) in _layout(inner).items():
                fields[sub if anonymous else f"{name}.{sub}"] = (offset + sub_off, sub_size)
    return fields


def _dtype_layout(dtype: np.dtype, base: int = 0, prefix: str = "") -> dict[str, tuple[int, int]]:
    fields = {}
    for name, (ftype, offset) in dtype.fields.items():
        fields[prefix + name] = (base + offset, ftype.itemsize)
        inner = ftype.subdtype[0] if ftype.subdtype else ftype
        if inner.fields:
            fields.update(_dtype_layout(inner, base + offset, prefix + name + "."))
    return fields


@pytest.fixture(scope="module")
def compiled():
    from anabranch.daemon.datapath import BuildOptions, Datapath

    datapath = Datapath(BuildOptions(flow_map_size=1024))
    yield datapath
    datapath.close()


@pytest.mark.parametrize("map_name", sorted(MAPS))
def test_map_structs_match_the_compiled_program(compiled, map_name):
    table = compiled.bpf[map_name.encode()]
    key_dtype, value_dtype = MAPS[map_name]
    for ctype, dtype in ((table.Key, key_dtype), (table.Leaf, value_dtype)):
        if dtype is None:
            continue
        assert ct.sizeof(ctype) == dtype.itemsize, f"{map_name}: {ctype.__name__} size"
        ctypes_fields = _layout(ctype)
        for field, where in _dtype_layout(dtype).items():
            if "." not in field:
                assert field in ctypes_fields, f"{map_name}: {field} not in the compiled struct"
            # nested fields: numpy and ctypes both give the first element's offsets
            assert ctypes_fields.get(field, where) == where, f"{map_name}.{field}"


def test_events_have_the_sizes_kstructs_declares(compiled):
    """Event structs are no map's key or value: their size is checked on the wire."""
    from anabranch.daemon import policy

    compiled.set_port(1, kstructs.ROLE_WAN, kstructs.PORT_COUNT)
    policy.write_policy(compiled, policy.Policy.default())
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ebpf"))
    from packets import SYN, ethernet, ipv4, mptcp_option, tcp

    option = mptcp_option(0, b"\x81" + b"\x11" * 8, low=1)
    frame = ethernet(ipv4("10.0.0.2", "192.0.2.1", 6, tcp(1, 2, SYN, options=option, payload=b"hi")), 0x0800)
    compiled.test_runner("egress").run(frame)
    sizes = {raw[0]: len(raw) for raw in compiled.drain_events()}
    assert sizes[kstructs.EVENT_NEW_FLOW] == kstructs.EVENT_FLOW.itemsize
    assert sizes[kstructs.EVENT_PAYLOAD] == kstructs.EVENT_PAYLOAD_T.itemsize
    assert sizes[kstructs.EVENT_MPTCP] == kstructs.EVENT_MPTCP_T.itemsize
