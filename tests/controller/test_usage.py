import pytest

from anabranch.controller.options import OptionsError
from anabranch.controller.usage import UsageMeter, UsageOptions, periods

from flowgen import table

DAY = 86400.0
T0 = 1_767_225_600.0 - 3600   # 2025-12-31 23:00 UTC


def flows(up_a, down_a, up_b=0, down_b=0):
    return [{"lan": "192.168.1.10", "rport": 443, "bytes": (up_a, down_a)},
            {"lan": "192.168.1.10", "rport": 80, "bytes": (up_a, down_a)},
            {"lan": "fd00::20", "remote": "2001:db8::1", "bytes": (up_b, down_b)}]


def test_bytes_per_host_for_ipv4_and_ipv6_from_counter_deltas():
    meter = UsageMeter()
    meter.update(table(flows(100, 1000, 5, 50)), T0)
    meter.update(table(flows(150, 1500, 5, 80)), T0 + 1)
    hosts = meter.hosts
    assert hosts["192.168.1.10"].day_bytes == [300, 3000]
    assert hosts["fd00::20"].day_bytes == [5, 80]
    assert hosts["192.168.1.10"].tick_bytes == [100, 1000]


def test_multicast_broadcast_and_unspecified_addresses_are_no_hosts():
    meter = UsageMeter()
    noise = [{"lan": "ff02::2", "remote": "fe80::1", "bytes": (0, 0)},
             {"lan": "255.255.255.255", "rport": 67, "bytes": (0, 0)},
             {"lan": "239.255.255.250", "rport": 1900, "bytes": (0, 0)},
             {"lan": "0.0.0.0", "rport": 67, "bytes": (0, 0)}]
    meter.update(table(flows(100, 1000) + noise), T0)
    moved = [dict(f, bytes=(500, 500)) for f in noise]
    meter.update(table(flows(150, 1500) + moved), T0 + 1)
    assert set(meter.hosts) == {"192.168.1.10"}


def test_days_and_months_roll_over_at_local_midnight():
    assert periods(T0, 0) == ("2025-12-31", "2025-12")
    assert periods(T0, 3600) == ("2026-01-01", "2026-01")
    meter = UsageMeter(UsageOptions(tz_offset_s=0))
    meter.update(table(flows(100, 100)), T0)
    meter.update(table(flows(200, 200)), T0 + 3600)
    host = next(h for h in meter.hosts.values() if h.address == "192.168.1.10")
    assert host.day == "2026-01-01" and host.day_bytes == [200, 200] and host.month_bytes == [200, 200]


def test_quota_events_once_at_90_and_100_percent_per_period():
    opts = UsageOptions.configure({"quotas": {"kids": {"prefix": "192.168.1.0/24", "period": "day",
                                                       "limit_gb": 0.000010, "direction": "down"}}})
    meter = UsageMeter(opts)
    assert meter.update(table(flows(0, 4000)), T0) == []               # 8 000 of 10 000 bytes
    events = meter.update(table(flows(0, 4600)), T0 + 1)               # 9 200
    assert [(e.quota, e.subject, e.level) for e in events] == [("kids", "192.168.1.0/24", 90)]
    assert meter.update(table(flows(0, 4700)), T0 + 2) == []
    events = meter.update(table(flows(0, 5200)), T0 + 3)               # 10 400
    assert [e.level for e in events] == [100] and events[0].period == "2025-12-31"


def test_per_host_quota_and_restore_after_restart():
    opts = UsageOptions.configure({"quotas": {"each": {"prefix": "fd00::/64", "per_host": True,
                                                       "limit_gb": 0.000001}}})
    meter = UsageMeter(opts)
    events = meter.update(table(flows(0, 0, 600, 500)), T0)
    assert [(e.subject, e.level) for e in events] == [("fd00::20", 90), ("fd00::20", 100)]
    again = UsageMeter(opts)
    again.restore(meter.snapshot())
    again.update(table(flows(0, 0, 700, 500)), T0 + 1)
    host = next(h for h in again.hosts.values() if h.address == "fd00::20")
    # A restarted daemon loads a fresh datapath: the saved totals plus the new counters.
    assert host.month_bytes == [1300, 1000]


def test_quota_options_errors_name_the_key():
    with pytest.raises(OptionsError) as err:
        UsageOptions.configure({"quotas": {"q": {"prefix": "10.0.0.0/33", "period": "week"}}})
    text = str(err.value)
    assert "usage.quotas.q.prefix:" in text and "usage.quotas.q.period: must be one of" in text
    assert "usage.quotas.q.limit_gb: missing" in text


def test_unsaved_rows_are_the_hosts_counted_since_the_last_save():
    meter = UsageMeter()
    meter.update(table(flows(100, 200, 0, 0)), T0)
    assert meter.unsaved() == [("192.168.1.10", "2025-12-31", "2025-12", 200, 400, 200, 400)]
    # A failed history write does not mark them saved: the next tick's write carries them too.
    meter.update(table(flows(100, 200, 5, 5)), T0 + 1)
    assert {row[0] for row in meter.unsaved()} == {"192.168.1.10", "fd00::20"}
    meter.mark_saved()
    meter.update(table(flows(100, 200, 9, 9)), T0 + 2)
    assert [row[0] for row in meter.unsaved()] == ["fd00::20"]


def test_restore_keeps_only_the_newest_day_and_month_of_each_host():
    saved = [{"address": "192.168.1.10", "day": "2025-12-30", "month": "2025-12",
              "day_up": 1, "day_down": 2, "month_up": 30, "month_down": 40},
             {"address": "fd00::20", "day": "2025-12-31", "month": "2025-12",
              "day_up": 5, "day_down": 6, "month_up": 7, "month_down": 8},
             {"address": "10.9.9.9", "day": "2025-11-30", "month": "2025-11",
              "day_up": 9, "day_down": 9, "month_up": 9, "month_down": 9}]
    meter = UsageMeter()
    meter.restore(saved)
    hosts = meter.hosts
    assert "10.9.9.9" not in hosts                   # last counted in an older month
    assert meter.day == "2025-12-31"
    assert hosts["192.168.1.10"].day_bytes == [0, 0] and hosts["192.168.1.10"].month_bytes == [30, 40]
    assert hosts["fd00::20"].day_bytes == [5, 6]
    assert meter.unsaved() == []
