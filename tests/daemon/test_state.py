"""The policy file when the disk says no: a change that cannot be saved is undone, nothing half-written stays."""

from __future__ import annotations

import copy

import pytest

from anabranch.daemon.state import AlertBook, Policy


@pytest.fixture
def broken(tmp_path):
    """A policy whose folder has become a plain file: every save fails with an OSError."""
    policy = Policy.load(tmp_path / "state")
    policy.add_rule({"id": "kept", "class": "file", "match": {"ports": [2222]}})
    (tmp_path / "state" / "policy.json").unlink()
    (tmp_path / "state").rmdir()
    (tmp_path / "state").write_text("")
    return policy


def test_a_rule_that_cannot_be_saved_is_not_applied(broken):
    rules = [r["id"] for r in broken.rules]
    with pytest.raises(OSError):
        broken.add_rule({"id": "lost", "class": "voice", "match": {"ports": [7000]}})
    assert [r["id"] for r in broken.rules] == rules


def test_class_link_and_alert_rule_changes_are_undone_when_the_save_fails(broken):
    before = copy.deepcopy(broken.document())
    for change in (lambda: broken.set_class("voice", {"dscp": 1}),
                   lambda: broken.set_link("wan0", {"down_mbit": 5}),
                   lambda: broken.set_alert_rule({"name": "x", "metric": "tick_ms", "op": ">", "threshold": 1}),
                   lambda: broken.delete_rule("kept")):
        with pytest.raises(OSError):
            change()
        assert broken.document() == before


def test_an_acknowledgement_that_cannot_be_saved_leaves_the_alert_unacknowledged(broken):
    book = AlertBook(broken)
    book.raise_alert("a1", "datapath-errors", "critical", "errors", now=1.0)
    with pytest.raises(OSError):
        book.ack("a1", now=2.0)
    assert book.active["a1"]["acked_at"] is None and broken.acked_alerts == {}


def test_a_failed_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    policy = Policy.load(tmp_path)
    real_fsync = __import__("os").fsync

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("anabranch.daemon.state.os.fsync", full)
    with pytest.raises(OSError):
        policy.set_class("voice", {"dscp": 3})
    monkeypatch.setattr("anabranch.daemon.state.os.fsync", real_fsync)
    assert list(tmp_path.iterdir()) == []
    assert policy.classes["voice"]["dscp"] == 46
