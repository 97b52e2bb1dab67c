"""The tick when its history cannot be written (a full or read-only disk): everything
else runs, an alert says so, and the history resumes once it can be written."""

from __future__ import annotations

import sqlite3

from anabranch.controller.history import History
from anabranch.controller.tick import Controller, ControllerOptions

from flowgen import row_of, table

T0 = 1_767_225_600.0
SSH = {"lan": "10.0.0.2", "lport": 5000, "remote": "198.51.100.1", "rport": 22, "ifindex": 2,
       "bytes": (5000, 100_000), "bps": (1e4, 8e5), "pps": (5, 70)}


def controller_at(path) -> Controller:
    return Controller(ControllerOptions.configure({"history": {"path": str(path)}}))


def rules(changes) -> set[str]:
    return {a.rule for a in changes}


def test_a_full_disk_keeps_classifying_raises_an_alert_and_resolves_it_when_writes_work(tmp_path, monkeypatch):
    controller = controller_at(tmp_path / "h.sqlite")
    t = table([SSH], now_s=50.0)
    controller.tick(t, [], T0)
    real_write = History.write

    def full(self, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(History, "write", full)
    first = controller.tick(t, [], T0 + 1)
    assert first.history_error == "database or disk is full"
    assert first.flow_class(row_of(t, SSH)) == ("file", "port:file")   # classification went on
    second = controller.tick(t, [], T0 + 2)
    assert "history_write_failing" in rules(second.alerts.raised)

    monkeypatch.setattr(History, "write", real_write)
    third = controller.tick(t, [], T0 + 3)
    assert third.history_error is None
    fourth = controller.tick(t, [], T0 + 4)
    assert "history_write_failing" in rules(fourth.alerts.resolved)
    written = {row[0] for row in controller.history.series(T0, T0 + 10, level=0)}
    assert written == {int(T0), int(T0 + 3), int(T0 + 4)}   # only the failed ticks are missing
    controller.close()


def test_a_history_that_cannot_be_opened_is_retried_each_tick(tmp_path):
    blocked = tmp_path / "state"
    blocked.write_text("")                       # a file where the folder should be
    controller = controller_at(blocked / "h.sqlite")
    assert controller.history is None
    t = table([SSH], now_s=50.0)
    result = controller.tick(t, [], T0)
    assert result.history_error and result.flow_class(row_of(t, SSH))[0] == "file"
    assert "history_write_failing" in rules(result.alerts.raised)   # the failed open counted already
    controller.tick(t, [], T0 + 1)
    blocked.unlink()
    blocked.mkdir()
    assert controller.tick(t, [], T0 + 2).history_error is None
    assert controller.history is not None
    controller.close()


def test_a_rollback_after_sqlite_gave_up_reports_the_first_error(tmp_path):
    history = History(tmp_path / "h.sqlite")
    history.db.execute("BEGIN")
    history.db.execute("ROLLBACK")               # as SQLite does itself on SQLITE_FULL
    assert not history.db.in_transaction
    history.close()
