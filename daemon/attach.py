"""Attach the datapath to tc clsact hooks with pyroute2, and take it away again.

Our filters are recognisable by their priority and handle (`FILTER_PRIO`,
`FILTER_HANDLE`) and their name prefix, so attaching *replaces* a previous
instance's filter atomically (no gap in counting, never a duplicate) and a
clean-up after a hard kill finds what to remove.  A clsact qdisc is removed only
if we created it: creation is recorded in a ledger file under the runtime
directory, which survives a crash of the daemon (but not a reboot, which clears
the kernel state too).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

# tc handles of the clsact qdisc's two hooks.
PARENT = {"ingress": "ffff:fff2", "egress": "ffff:fff3"}
FILTER_PRIO = 0xAB        # distinctive preference: ours, not tc's automatic 49152..
FILTER_HANDLE = 0xAB
FILTER_NAME_PREFIX = "anabranch"


class AttachError(Exception):
    pass


@dataclass
class Ledger:
    """Kernel objects this appliance created, persisted so a restart inherits them."""

    path: Path
    clsact_created: set[str] = field(default_factory=set)  # interface names

    @classmethod
    def load(cls, path: Path) -> Ledger:
        ledger = cls(path)
        try:
            document = json.loads(path.read_text())
            ledger.clsact_created = set(document.get("clsact_created", []))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable ledger %s: %s", path, exc)
        return ledger

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"clsact_created": sorted(self.clsact_created)}))
        os.replace(tmp, self.path)


def _filter_name(filt) -> str | None:
    options = filt.get_attr("TCA_OPTIONS")
    if options is None:
        return None
    return options.get_attr("TCA_BPF_NAME")


def _has_clsact(ipr: IPRoute, ifindex: int) -> bool:
    return any(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(index=ifindex))


class TcHooks:
    """Our filters on the clsact hooks of the configured interfaces."""

    def __init__(self, ledger: Ledger, netns: str | None = None):
        self.ledger = ledger
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        self.attached: dict[str, int] = {}  # interface name -> ifindex

    def close(self) -> None:
        self._ipr.close()

    def ifindex(self, name: str) -> int | None:
        found = self._ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def oper_up(self, ifindex: int) -> bool:
        links = self._ipr.get_links(ifindex)
        return bool(links) and links[0].get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN")

    def attach(self, name: str, program_fds: dict[str, int], program_names: dict[str, str]) -> int:
        """Attach both hooks on `name`; returns its ifindex.  Raises AttachError."""
        ifindex = self.ifindex(name)
        if ifindex is None:
            raise AttachError(f"interface {name}: not found")
        try:
            if not _has_clsact(self._ipr, ifindex):
                self._ipr.tc("add", "clsact", ifindex)
                self.ledger.clsact_created.add(name)
                self.ledger.save()
            for hook, parent in PARENT.items():
                self._ipr.tc("replace-filter", "bpf", ifindex, FILTER_HANDLE,
                             parent=parent, prio=FILTER_PRIO, protocol=0x0003,  # ETH_P_ALL
                             fd=program_fds[hook], name=program_names[hook],
                             classid=1, direct_action=True)
                self._remove_strays(ifindex, parent)
        except NetlinkError as exc:
            raise AttachError(f"interface {name}: attaching the datapath failed: "
                              f"{os.strerror(exc.code)}") from None
        self.attached[name] = ifindex
        log.info("attached datapath to %s (ifindex %d)", name, ifindex)
        return ifindex

    def _remove_strays(self, ifindex: int, parent: str) -> None:
        """Anabranch filters at another priority (an older version's): remove them."""
        for filt in self._ipr.get_filters(index=ifindex, parent=parent):
            name = _filter_name(filt)
            prio = filt["info"] >> 16
            if name and name.startswith(FILTER_NAME_PREFIX) and prio != FILTER_PRIO:
                self._ipr.tc("del-filter", "bpf", ifindex, parent=parent, prio=prio)
                log.info("removed a stray anabranch filter (prio %d) on ifindex %d", prio, ifindex)

    def filters(self, name: str) -> dict[str, list[dict]]:
        """Our filters as the kernel reports them, per hook (for tests and status)."""
        ifindex = self.ifindex(name)
        result: dict[str, list[dict]] = {"ingress": [], "egress": []}
        if ifindex is None or not _has_clsact(self._ipr, ifindex):
            return result
        for hook, parent in PARENT.items():
            for filt in self._ipr.get_filters(index=ifindex, parent=parent):
                fname = _filter_name(filt)
                if fname:
                    result[hook].append({"name": fname, "prio": filt["info"] >> 16})
        return result

    def forget(self, name: str) -> None:
        """The interface is gone: the kernel dropped our hooks with it."""
        self.attached.pop(name, None)
        if name in self.ledger.clsact_created:
            self.ledger.clsact_created.discard(name)
            self.ledger.save()

    def detach(self, name: str, ifindex: int | None = None) -> list[str]:
        """Remove our filters (and clsact if we created it); returns the failures.

        `ifindex` names the device when it no longer carries `name` (renamed)."""
        failures = []
        ifindex = ifindex or self.attached.pop(name, None) or self.ifindex(name)
        self.attached.pop(name, None)
        if ifindex is None:
            self.ledger.clsact_created.discard(name)
            self.ledger.save()
            return failures  # the interface is gone, and our hooks with it
        for hook, parent in PARENT.items():
            try:
                self._ipr.tc("del-filter", "bpf", ifindex, parent=parent, prio=FILTER_PRIO)
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                    failures.append(f"{name} {hook} filter: {os.strerror(exc.code)}")
        if name in self.ledger.clsact_created:
            try:
                self._ipr.tc("del", "clsact", ifindex)
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                    failures.append(f"{name} clsact: {os.strerror(exc.code)}")
            self.ledger.clsact_created.discard(name)
            self.ledger.save()
        for failure in failures:
            log.error("detach: %s", failure)
        return failures

    def detach_all(self, names: list[str] | None = None) -> list[str]:
        failures = []
        for name in list(names if names is not None else self.attached):
            failures += self.detach(name)
        return failures
