import csv
import io
import json
import time

from anabranch.controller import history
from anabranch.controller.alerts import Alert
from anabranch.controller.history import History, Point, close_open_alerts

T0 = 1_767_225_600        # a whole hour


def test_ticks_write_points_and_reopen_continues(tmp_path):
    path = tmp_path / "history.sqlite"
    h = History(path)
    for i in range(3):
        h.write(T0 + i, [Point("class", "video", "down_bps", 1000.0 * i)])
    h.close()
    h = History(path)
    h.write(T0 + 3, [Point("class", "video", "down_bps", 3000.0)])
    rows = h.series(T0, T0 + 10, level=0)
    assert [r[4] for r in rows] == [0.0, 1000.0, 2000.0, 3000.0]
    assert h.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_checkpoints_after_commits_keep_the_wal_from_growing(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "CHECKPOINT_EVERY_S", 0.01)
    h = History(tmp_path / "h.sqlite")
    wal = tmp_path / "h.sqlite-wal"
    points = [Point("host", f"10.0.{i // 250}.{i % 250}", "bytes_down", float(i)) for i in range(500)]
    h.write(T0, points)
    one_tick = wal.stat().st_size
    for i in range(1, 40):
        time.sleep(0.03)             # a checkpoint follows each commit: the WAL starts over
        h.write(T0 + i, points)
    size = wal.stat().st_size
    h.close()
    assert size < 5 * one_tick


def test_minutes_are_averaged_and_old_seconds_pruned(tmp_path):
    h = History(tmp_path / "h.sqlite")
    for i in range(0, 3 * 60):
        h.write(T0 + i, [Point("link", "wan0", "rtt_p50_ms", float(i // 60))])
    minutes = h.series(T0, T0 + 3600, level=1)
    assert [(t - T0, v) for t, _, _, _, v in minutes] == [(0, 0.0), (60, 1.0)]
    h.write(T0 + 2 * 3600, [Point("link", "wan0", "rtt_p50_ms", 9.0)])
    assert h.size()[0] == 1                        # the 1 s level keeps one hour
    hours = h.series(T0, T0 + 3 * 3600, level=2)
    assert [(t - T0, round(v, 3)) for t, _, _, _, v in hours] == [(0, round((0 + 1 + 2) / 3, 3))]


def test_downsampling_catches_up_after_a_restart_gap(tmp_path):
    path = tmp_path / "h.sqlite"
    h = History(path)
    for i in range(30):
        h.write(T0 + i, [Point("host", "10.0.0.1", "bytes_down", 10.0)])
    h.close()
    h = History(path)
    h.write(T0 + 600, [Point("host", "10.0.0.1", "bytes_down", 20.0)])
    assert [(t - T0, v) for t, _, _, _, v in h.series(T0, T0 + 3600, level=1)] == [(0, 10.0)]


def test_alerts_log_and_export_csv_json(tmp_path):
    h = History(tmp_path / "h.sqlite")
    alert = Alert(1, "path_loss", "path.loss_pct", "wan0", "warning", "loss", 3.0, 2.0, T0 + 1)
    h.write(T0 + 1, [Point("link", "wan0", "loss_pct", 3.0)], [alert])
    alert.resolved_at = T0 + 2
    h.write(T0 + 2, [Point("link", "wan0", "loss_pct", 0.0)], [alert])
    rows = list(csv.reader(io.StringIO(h.export(T0, T0 + 5, "csv"))))
    assert rows[0] == ["t", "resolution_s", "kind", "subject", "metric", "value"]
    assert rows[1] == [str(T0 + 1), "1", "link", "wan0", "loss_pct", "3.0"]
    doc = json.loads(h.export(T0, T0 + 5, "json"))
    assert doc["series"][0]["points"] == [[T0 + 1, 3.0], [T0 + 2, 0.0]]
    assert doc["alerts"][0]["resolved_at"] == T0 + 2
    assert h.last_alert_id() == 1


def test_alerts_left_open_by_a_crash_are_closed_on_restart(tmp_path):
    h = History(tmp_path / "h.sqlite")
    h.write(T0, [], [Alert(4, "r", "m", "s", "warning", "x", 1.0, 0.0, T0)])
    assert close_open_alerts(h, T0 + 50) == 1
    assert h.alerts(T0, T0 + 60)[0]["resolved_at"] == T0 + 50


def test_usage_rows_round_trip_and_replace_older_ones(tmp_path):
    h = History(tmp_path / "h.sqlite")
    h.write(T0, [], usage=[("10.0.0.1", "2026-11-22", "2026-11", 1, 2, 3, 4),
                           ("fd00::1", "2026-11-22", "2026-11", 5, 6, 7, 8)])
    h.write(T0 + 1, [], usage=[("10.0.0.1", "2026-11-22", "2026-11", 10, 20, 30, 40)])
    h.close()
    saved = {u["address"]: u for u in History(tmp_path / "h.sqlite").load_usage()}
    assert saved["10.0.0.1"] == {"address": "10.0.0.1", "day": "2026-11-22", "month": "2026-11",
                                 "day_up": 10, "day_down": 20, "month_up": 30, "month_down": 40}
    assert saved["fd00::1"]["month_down"] == 8
    again = History(tmp_path / "h.sqlite")
    again.write(T0 + 2, [], usage=[("10.0.0.9", "2026-12-01", "2026-12", 1, 1, 1, 1)])
    again.forget_usage_before("2026-12")
    assert [u["address"] for u in again.load_usage()] == ["10.0.0.9"]


def test_usage_of_a_database_from_before_the_usage_table_is_read(tmp_path):
    import json
    import sqlite3

    path = tmp_path / "h.sqlite"
    History(path).close()
    legacy = [{"address": "10.0.0.1", "day": "2026-11-22", "month": "2026-11",
               "day_up": 1, "day_down": 2, "month_up": 3, "month_down": 4}]
    db = sqlite3.connect(path)
    db.execute("DROP TABLE usage")       # as an earlier version made it
    db.execute("INSERT INTO meta VALUES ('state:usage', ?)", (json.dumps(legacy),))
    db.commit()
    db.close()
    h = History(path)
    assert h.load_usage() == legacy
    # Moved into the table: a host that moves no more is still there at the next restart.
    h.write(T0, [], usage=[("10.0.0.2", "2026-11-22", "2026-11", 5, 6, 7, 8)])
    h.close()
    again = History(path)
    assert {u["address"]: u["day_up"] for u in again.load_usage()} == {"10.0.0.1": 1, "10.0.0.2": 5}
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM meta WHERE key = 'state:usage'").fetchone() == (0,)


def test_the_database_stays_at_its_size_cap_and_keeps_the_newest_points(tmp_path):
    from anabranch.controller.history import History, Point

    cap = 1_500_000
    history = History(tmp_path / "h.db", max_bytes=cap)
    start = 1_795_000_000
    points = [Point("host", f"10.0.{i // 250}.{i % 250}", "bytes_up", float(i)) for i in range(300)]
    sizes = []
    for t in range(start, start + 1800):
        history.write(t, points)
        if t % 60 == 59:
            sizes.append(history.used_bytes())
    assert history.trimmed_rows > 0
    # At the cap once a minute, after the first minutes that fill it.
    assert max(sizes[-10:]) <= cap + 60 * 300 * 40
    assert history.used_bytes() <= cap + 60 * 300 * 40
    newest = history.series(start + 1790, start + 1800, level=0)
    assert len(newest) == 10 * 300                                   # the newest seconds are all there
    assert not history.series(start, start + 60, level=0)             # the oldest went first
    assert (tmp_path / "h.db").stat().st_size <= 2 * cap               # the file shrank back too
    history.close()


def test_two_ticks_in_one_second_keep_both_rows(tmp_path):
    from anabranch.controller.history import History, Point

    history = History(tmp_path / "h.db")
    for now in (1_795_000_000.2, 1_795_000_000.9, 1_795_000_001.5):    # a late tick, then on time
        history.write(now, [Point("total", "-", "flows", now)])
    rows = history.series(1_795_000_000, 1_795_000_010, level=0)
    assert [t for t, *_ in rows] == [1_795_000_000, 1_795_000_001, 1_795_000_002]
    history.close()


def test_a_minute_summed_while_written_equals_the_average_of_its_rows(tmp_path):
    """One instance averages a minute it saw whole from memory; one reopened every tick
    averages it in SQL: the minute level must hold the same rows either way."""
    import random

    rng = random.Random(7)
    ticks = []
    for i in range(4 * 60 + 5):
        points = [Point("class", c, "up_bps", rng.uniform(0, 1e6)) for c in ("voice", "video")]
        points += [Point("host", f"10.0.0.{k}", "bytes_down", float(rng.randrange(10_000))) for k in range(3)]
        if i % 7 == 0:
            points.append(Point("link", "wan0", "rtt_p50_ms", float("nan")))   # no value, as AVG sees it
        if i % 11 == 0:
            points.append(Point("connection", "beef", "subflows", 2.0))          # only some seconds
        ticks.append((T0 + 30 + i, points))
    kept = History(tmp_path / "kept.sqlite")
    for t, points in ticks:
        kept.write(t, points)
    reopened_path = tmp_path / "reopened.sqlite"
    for t, points in ticks:
        reopened = History(reopened_path)
        reopened.write(t, points)
        reopened.close()
    reopened = History(reopened_path)

    def minutes(h):
        return [(t, kind, subject, metric, None if v is None else round(v, 6))
                for t, kind, subject, metric, v in h.series(T0, T0 + 3600, level=1)]

    assert len(minutes(kept)) >= 3 * 6
    assert minutes(kept) == minutes(reopened)
    kept.close()
    reopened.close()
