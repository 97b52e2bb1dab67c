"""Time series and the alerts log in SQLite (WAL): 1 s points for an hour, 1 min for
7 days, 1 h for a year, downsampled by averaging as time passes; CSV/JSON export.

One transaction per tick: a crash loses at most the tick being written, and a
restart reopens the file and continues (downsampling catches up on what it missed).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .alerts import Alert

# (resolution s, retention s) of each level; level 0 is what ticks write.
LEVELS = ((1, 3600), (60, 7 * 86400), (3600, 365 * 86400))
CHECKPOINT_EVERY_S = 2.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    level INTEGER NOT NULL, t INTEGER NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL,
    PRIMARY KEY (level, t, kind, subject, metric)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, rule TEXT, metric TEXT, subject TEXT, severity TEXT, summary TEXT,
    value REAL, threshold REAL, raised_at REAL, resolved_at REAL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS usage (
    address TEXT PRIMARY KEY, day TEXT, month TEXT,
    day_up INTEGER, day_down INTEGER, month_up INTEGER, month_down INTEGER) WITHOUT ROWID;
"""
USAGE_COLUMNS = ("address", "day", "month", "day_up", "day_down", "month_up", "month_down")


@dataclass(frozen=True)
class Point:
    kind: str        # "class", "link", "host", "connection", "total"
    subject: str
    metric: str
    value: float


class History:
    """`max_bytes`: the database's size cap; past it, the oldest points go first (checked
    once a minute, when the minute level is written)."""

    def __init__(self, path: str | Path, max_bytes: int | None = None):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.trimmed_rows = 0
        self._last_t: int | None = None
        # The minute being written, summed as it is written (key -> [sum, count]), so that
        # averaging it is an insert of one row per series instead of a 6 ms GROUP BY over
        # every second of it in the tick that ends the minute.
        self._sums: dict[tuple[str, str, str], list[float]] = {}
        self._sums_minute: int | None = None
        self._first_minute: int | None = None   # this process began in it: its sums are partial
        self._finished: tuple[int, dict[tuple[str, str, str], list[float]]] | None = None
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # Freed pages go back to the file system on trim (takes effect for a new file only).
        self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a process crash loses nothing committed, power loss the last tick.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        # Checkpoints (copying the WAL into the database, with an fsync) take 10-20 ms: a
        # thread of its own runs them, PASSIVE so they never wait for or block the tick's
        # writes, instead of SQLite running one inside whichever commit crosses 1000 pages.
        # Each starts just after a commit: its fsync holds up the file system's journal,
        # and a commit that met it waited for it (75 ms once in a 5-minute soak), so it
        # should be over long before the next tick writes.
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self._stop = threading.Event()
        self._committed = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="history-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            while not self._stop.wait(CHECKPOINT_EVERY_S):
                self._committed.clear()     # not a commit from before: the next one
                while not self._committed.wait(CHECKPOINT_EVERY_S):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    break
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass    # a full disk: the tick's own write reports it
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        self._committed.set()
        self._checkpointer.join(timeout=5)
        self.db.close()

    # -- meta ---------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def load_usage(self) -> list[dict]:
        """Each host's saved day and month totals.  A database from before the usage table
        kept them as one snapshot in meta: it moves into the table here, in one transaction."""
        legacy = self._meta("state:usage")
        if legacy:
            hosts = json.loads(legacy)
            try:
                with self.db:
                    self.db.execute("BEGIN")
                    self.save_usage(tuple(host[c] for c in USAGE_COLUMNS) for host in hosts)
                    self.db.execute("DELETE FROM meta WHERE key = 'state:usage'")
            except sqlite3.Error:
                return hosts    # a full or read-only disk: moved at a later start
        rows = self.db.execute(f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage").fetchall()
        return [dict(zip(USAGE_COLUMNS, row)) for row in rows]

    def save_usage(self, rows: Iterable[tuple]) -> None:
        """Store hosts' totals (tuples in USAGE_COLUMNS order): within a tick's write, or
        alone at close, one statement, so written whole or not at all."""
        self.db.executemany("INSERT OR REPLACE INTO usage VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def forget_usage_before(self, month: str) -> None:
        """Drop hosts last counted before `month` ("2026-11"): a restore has nothing to carry for them."""
        self.db.execute("DELETE FROM usage WHERE month < ?", (month,))

    def last_alert_id(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM alerts").fetchone()[0]

    # -- the tick's write -----------------------------------------------------------------
    def write(self, now: float, points: Iterable[Point], alerts: Iterable[Alert] = (),
              usage: Iterable[tuple] = ()) -> None:
        """One tick in one transaction: its points, the alerts raised or resolved, and the
        usage totals of the hosts counted in it (see save_usage)."""
        t = int(now)
        if self._last_t is not None and self._last_t - 2 <= t <= self._last_t:
            # Two ticks in one second (a late one, then an on-time one) must not replace
            # each other's row: the later takes the next second.  A real clock step back
            # (more than 2 s) is written where it falls.
            t = self._last_t + 1
        points = list(points)
        self._roll_minute(t)
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR REPLACE INTO series VALUES (0, ?, ?, ?, ?, ?)",
                           ((t, p.kind, p.subject, p.metric, p.value) for p in points))
            db.executemany("INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           ((a.id, a.rule, a.metric, a.subject, a.severity, a.summary, a.value,
                             a.threshold, a.raised_at, a.resolved_at) for a in alerts))
            self.save_usage(usage)
            minute_done = self._downsample(t)
            # Seconds older than their retention go a tick at a time, not a minute's worth at
            # once (after the minute level has averaged them: _downsample runs first).
            db.execute("DELETE FROM series WHERE level = 0 AND t < ?", (t - LEVELS[0][1],))
            db.execute("COMMIT")
            self._last_t = t
            self._committed.set()
            self._sum(points)
            if minute_done and self.max_bytes is not None:
                self.trim()
        except BaseException:
            # SQLite may have rolled back already (e.g. SQLITE_FULL): only end a live transaction,
            # so the caller sees the first error, not "no transaction is active".
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _roll_minute(self, t: int) -> None:
        minute = t - t % LEVELS[1][0]
        if minute == self._sums_minute:
            return
        if self._first_minute is None:
            self._first_minute = minute
        # Only a minute this process saw begin has whole sums.
        whole = self._sums_minute is not None and self._sums_minute > self._first_minute
        self._finished = (self._sums_minute, self._sums) if whole else None
        self._sums, self._sums_minute = {}, minute

    def _sum(self, points: list[Point]) -> None:
        latest = {(p.kind, p.subject, p.metric): p.value for p in points}   # as INSERT OR REPLACE keeps
        for key, value in latest.items():
            acc = self._sums.setdefault(key, [0.0, 0])
            if value is not None and value == value:    # NULL and NaN are no value, as for AVG
                acc[0] += value
                acc[1] += 1

    def _downsample(self, t: int) -> bool:
        """Average finished buckets into the coarser levels; True when a minute was done."""
        minute_done = False
        for level in (1, 2):
            step, keep = LEVELS[level]
            source_step, source_keep = LEVELS[level - 1]
            bucket = t - t % step
            done_text = self._meta(f"done:{level}")
            if done_text is None:
                self._set_meta(f"done:{level}", str(bucket))
                continue
            done = int(done_text)
            if done >= bucket:
                continue
            if level == 1 and bucket - done == step and self._finished and self._finished[0] == done:
                # The one minute just ended, summed while it was written.
                self.db.executemany("INSERT OR REPLACE INTO series VALUES (1, ?, ?, ?, ?, ?)",
                                    ((done, kind, subject, metric, acc[0] / acc[1] if acc[1] else None)
                                     for (kind, subject, metric), acc in self._finished[1].items()))
            else:
                # Average every complete bucket since the last run (catches up after a restart).
                self.db.execute(
                    "INSERT OR REPLACE INTO series "
                    "SELECT ?, (t / ?) * ?, kind, subject, metric, AVG(value) FROM series "
                    "WHERE level = ? AND t >= ? AND t < ? GROUP BY t / ?, kind, subject, metric",
                    (level, step, step, level - 1, done, bucket, step))
            self._set_meta(f"done:{level}", str(bucket))
            minute_done = minute_done or level == 1
            if level - 1 > 0:   # seconds (level 0) are pruned by every tick's write
                self.db.execute("DELETE FROM series WHERE level = ? AND t < ?", (level - 1, t - source_keep))
            if level == 2:
                self.db.execute("DELETE FROM series WHERE level = 2 AND t < ?", (t - keep,))
                self.db.execute("DELETE FROM alerts WHERE resolved_at < ?", (t - keep,))
        return minute_done

    def used_bytes(self) -> int:
        pages, free, size = (self.db.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size

    def trim(self) -> int:
        """Delete the oldest tenth of the points until the database fits `max_bytes`."""
        deleted = 0
        for _ in range(20):
            if self.used_bytes() <= self.max_bytes:
                break
            total = self.db.execute("SELECT COUNT(*) FROM series").fetchone()[0]
            if total == 0:
                break
            cut = self.db.execute("SELECT t FROM series ORDER BY t LIMIT 1 OFFSET ?",
                                  (max(1, total // 10),)).fetchone()[0]
            deleted += self.db.execute("DELETE FROM series WHERE t <= ?", (cut,)).rowcount
        if deleted:
            self.db.execute("PRAGMA incremental_vacuum")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.trimmed_rows += deleted
        return deleted

    # -- reading ----------------------------------------------------------------------------
    def level_for(self, start: float, latest: float | None = None) -> int:
        """The finest level that still holds `start`."""
        if latest is None:
            latest = self.db.execute("SELECT COALESCE(MAX(t), 0) FROM series WHERE level = 0").fetchone()[0]
        for level, (_, keep) in enumerate(LEVELS):
            if latest - start <= keep:
                return level
        return len(LEVELS) - 1

    def series(self, start: float, end: float, level: int | None = None,
               kinds: tuple[str, ...] | None = None) -> list[tuple[int, str, str, str, float]]:
        level = self.level_for(start) if level is None else level
        query = "SELECT t, kind, subject, metric, value FROM series WHERE level = ? AND t >= ? AND t <= ?"
        args: list = [level, int(start), int(end)]
        if kinds:
            query += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += list(kinds)
        return self.db.execute(query + " ORDER BY t, kind, subject, metric", args).fetchall()

    def alerts(self, start: float, end: float) -> list[dict]:
        rows = self.db.execute(
            "SELECT id, rule, metric, subject, severity, summary, value, threshold, raised_at, resolved_at "
            "FROM alerts WHERE raised_at <= ? AND (resolved_at IS NULL OR resolved_at >= ?) ORDER BY id",
            (end, start)).fetchall()
        names = ("id", "rule", "metric", "subject", "severity", "summary", "value", "threshold",
                 "raised_at", "resolved_at")
        return [dict(zip(names, row)) for row in rows]

    def export(self, start: float, end: float, fmt: str = "json", level: int | None = None,
               kinds: tuple[str, ...] | None = None) -> str:
        """Series (and, in JSON, the alerts) between `start` and `end` (epoch s)."""
        level = self.level_for(start) if level is None else level
        rows = self.series(start, end, level, kinds)
        resolution = LEVELS[level][0]
        if fmt == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["t", "resolution_s", "kind", "subject", "metric", "value"])
            writer.writerows((t, resolution, k, s, m, v) for t, k, s, m, v in rows)
            return out.getvalue()
        if fmt != "json":
            raise ValueError(f'fmt: must be "csv" or "json", got "{fmt}"')
        grouped: dict[tuple[str, str, str], list] = {}
        for t, k, s, m, v in rows:
            grouped.setdefault((k, s, m), []).append([t, v])
        return json.dumps({
            "start": start, "end": end, "resolution_s": resolution,
            "series": [{"kind": k, "subject": s, "metric": m, "points": p} for (k, s, m), p in grouped.items()],
            "alerts": self.alerts(start, end),
        })

    def size(self) -> dict[int, int]:
        return dict(self.db.execute("SELECT level, COUNT(*) FROM series GROUP BY level").fetchall())


def open_alerts(history: History) -> list[Alert]:
    """Alerts the previous run left active (to restore them, not to raise them again)."""
    rows = history.db.execute(
        "SELECT id, rule, metric, subject, severity, summary, value, threshold, raised_at "
        "FROM alerts WHERE resolved_at IS NULL ORDER BY id").fetchall()
    return [Alert(*row) for row in rows]


def close_open_alerts(history: History, now: float) -> int:
    """After a restart, alerts the previous run left open are resolved at `now`
    (the new run raises them again if their condition still holds)."""
    cursor = history.db.execute("UPDATE alerts SET resolved_at = ? WHERE resolved_at IS NULL", (now,))
    return cursor.rowcount
