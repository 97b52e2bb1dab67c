import numpy as np
import pytest

from anabranch.controller.features import FlowExtras
from anabranch.controller.options import OptionsError
from anabranch.controller.paths import (LinkSpec, PathMonitor, PathOptions, bandwidth_score, latency_score,
                                        recommend, stability_score)

from flowgen import table


def test_score_parts_follow_the_documented_defaults():
    assert latency_score(40) == 80 and latency_score(300) == 0
    assert bandwidth_score(5) == 50 and bandwidth_score(50) == 100
    assert bandwidth_score(25, capacity_mbit=100) == 25
    assert stability_score(0.0) == 100 and stability_score(0.1) == pytest.approx(90)
    assert stability_score(1.0) == 0 and stability_score(5.0) == 0


def link_specs(n_a=20, n_b=20):
    a = [{"ifindex": 2, "rport": 443, "lport": 1000 + i, "bps": (1e6, 4e6), "pps": (10, 10),
          "packets": (100 * (i + 1), 100 * (i + 1))} for i in range(n_a)]
    b = [{"ifindex": 3, "rport": 443, "lport": 3000 + i, "bps": (1e5, 2e5), "pps": (10, 10),
          "packets": (100 * (i + 1), 100 * (i + 1))} for i in range(n_b)]
    return a + b


def test_rtt_percentiles_loss_score_and_utilisation_per_link():
    monitor = PathMonitor([LinkSpec("fibre", 2, up_mbit=100, down_mbit=100), LinkSpec("lte", 3)])
    specs = link_specs()
    stats = None
    for tick in range(3):
        t = table([dict(s, packets=(s["packets"][0] * (tick + 1), s["packets"][1] * (tick + 1)))
                   for s in specs], now_s=100.0 + tick)
        ifindex = t.keys["ifindex"]
        rtt = np.where(ifindex == 2, 20.0, 150.0)
        rtt[np.flatnonzero(ifindex == 3)[:2]] = np.nan          # absent samples are ignored
        retrans = np.where(ifindex == 3, tick * 10, 0).astype(np.uint64)
        stats = {s.name: s for s in monitor.update(t, 100.0 + tick, FlowExtras(rtt_ms=rtt, retrans=retrans))}
    fibre, lte = stats["fibre"], stats["lte"]
    assert fibre.rtt_p50_ms == 20 and fibre.rtt_p95_ms == 20 and fibre.jitter_ms == 0
    assert fibre.down_bps == pytest.approx(80e6) and fibre.utilisation_pct == pytest.approx(80)
    assert fibre.loss_pct == 0 and fibre.stability_score == 100
    assert lte.rtt_p50_ms == 150 and lte.utilisation_pct is None
    assert lte.loss_pct > 0 and lte.score < fibre.score
    assert 0 <= lte.score <= 100


def test_recommendation_sends_voice_to_low_delay_and_bulk_to_bandwidth():
    monitor = PathMonitor([LinkSpec("fibre", 2), LinkSpec("sat", 3)])
    t = table(link_specs(5, 5))
    rtt = np.where(t.keys["ifindex"] == 2, 30.0, 600.0)
    stats = monitor.update(t, 100.0, FlowExtras(rtt_ms=rtt))
    rec = recommend(stats)
    assert rec["voice"] == "fibre" and rec["interactive"] == "fibre"
    assert rec["video"] == "fibre"


def test_link_without_rtt_samples_scores_on_what_is_known():
    (stats,) = PathMonitor().update(table([{"bps": (0.0, 2e6), "pps": (1, 1)}]), 100.0)
    assert stats.rtt_p95_ms is None and stats.name == "2"
    assert stats.score == pytest.approx(20.0)       # bandwidth only: 2 Mbit/s -> 20


def test_options_validate_weights():
    with pytest.raises(OptionsError, match="paths: latency_weight"):
        PathOptions.configure({"latency_weight": 0.9})
    with pytest.raises(OptionsError, match='paths.window_s: must be a number, got "long"'):
        PathOptions.configure({"window_s": "long"})
