"""The predictor's network in PyTorch (training only; the appliance runs its ONNX export).

The graph is self-contained: it takes a window of raw Mbit/s samples with a
validity mask and returns p10/p50/p90 of the mean rate over the next 1 s and
5 s, in Mbit/s.  Inside, every input is divided by the window's mean level, so
one network serves a 5 Mbit/s DSL line and a 1 Gbit/s fibre alike.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

HORIZONS = (1, 5)
QUANTILES = (0.1, 0.5, 0.9)
# Below this level (Mbit/s) a window counts as idle; the floor keeps the
# division finite on all-zero windows, whose forecast is then ~0.
LEVEL_FLOOR = 1e-3
# A ratio to the level above this is a spike, clipped so one outlier cannot
# saturate the recurrent state.
RATIO_CEILING = 50.0
# Relative step below which two samples count as equal: sources held at a
# coarser native step (5 s broadband, 2 s video chunks) show runs of equal
# samples, and where a run ends tells the network what comes next.
SAME_SAMPLE = 1e-4
FEATURES = 4
# log(ratio + LOG_OFFSET) keeps idle ticks finite and spreads out low rates.
LOG_OFFSET = 0.05


def features(rates: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-free per-tick features [n, width, FEATURES] and the level [n, 1] they are relative to."""
    count = valid.sum(dim=1, keepdim=True).clamp(min=1.0)
    level = ((rates * valid).sum(dim=1, keepdim=True) / count).clamp(min=LEVEL_FLOOR)
    ratio = (rates / level).clamp(max=RATIO_CEILING)
    step = (ratio[:, 1:] - ratio[:, :-1]).abs()
    both = valid[:, 1:] * valid[:, :-1]
    changed = torch.cat([torch.zeros_like(ratio[:, :1]), (step > SAME_SAMPLE).float() * both], dim=1)
    log_ratio = torch.log(ratio + LOG_OFFSET)
    return torch.stack([ratio, log_ratio, valid, changed], dim=-1), level


class QuantileHead(nn.Module):
    """Ordered, non-negative quantiles per horizon from a feature vector.

    The median is a gated blend of the last sample and a learned level: within a
    run of held samples the next value is the last one exactly, and a saturated
    gate can say so, where an additive correction would always leave some noise.
    The band is built outward from the median.
    """

    def __init__(self, width: int):
        super().__init__()
        self.out = nn.Linear(width, len(HORIZONS) * 4)

    def forward(self, summary: torch.Tensor, last_ratio: torch.Tensor) -> torch.Tensor:
        raw = self.out(summary).view(-1, len(HORIZONS), 4)
        gate = torch.sigmoid(raw[..., 3])
        learned = F.softplus(raw[..., 1] + 1.0)
        p50 = gate * last_ratio[:, None] + (1 - gate) * learned
        p10 = F.relu(p50 - F.softplus(raw[..., 0]))
        p90 = p50 + F.softplus(raw[..., 2])
        return torch.stack([p10, p50, p90], dim=-1)


# The hybrid's recurrent part: small and short, as ONNX runs a GRU step by step.
RECURRENT_SPAN = 30
RECURRENT_HIDDEN = 32


class RateNetwork(nn.Module):
    """kind: gru | lstm (recurrent over the window), tcn (dilated causal convolutions), mlp,
    or hybrid (an MLP over the whole window beside a small GRU over its newest RECURRENT_SPAN ticks)."""

    def __init__(self, kind: str = "gru", hidden: int = 32, window: int = 30):
        super().__init__()
        self.kind, self.hidden, self.window = kind, hidden, window
        if kind == "gru":
            self.body = nn.GRU(FEATURES, hidden, batch_first=True)
        elif kind == "lstm":
            self.body = nn.LSTM(FEATURES, hidden, batch_first=True)
        elif kind == "tcn":
            layers, channels, dilation = [], FEATURES, 1
            while dilation < window:
                layers += [nn.ConstantPad1d((dilation, 0), 0.0), nn.Conv1d(channels, hidden, 2, dilation=dilation), nn.ReLU()]
                channels, dilation = hidden, dilation * 2
            self.body = nn.Sequential(*layers)
        elif kind == "mlp":
            self.body = nn.Sequential(nn.Linear(FEATURES * window, 4 * hidden), nn.ReLU(),
                                      nn.Linear(4 * hidden, hidden), nn.ReLU())
        elif kind == "hybrid":
            self.body = nn.Sequential(nn.Linear(FEATURES * window, 4 * hidden), nn.ReLU(),
                                      nn.Linear(4 * hidden, hidden), nn.ReLU())
            self.recurrent = nn.GRU(FEATURES, RECURRENT_HIDDEN, batch_first=True)
            self.join = nn.Sequential(nn.Linear(hidden + RECURRENT_HIDDEN, hidden), nn.ReLU())
        else:
            raise ValueError(f"network kind must be gru, lstm, tcn, mlp or hybrid, got {kind!r}")
        self.head = QuantileHead(hidden)

    def forward(self, rates: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x, level = features(rates, valid)
        if self.kind in ("gru", "lstm"):
            states, _ = self.body(x)
            summary = states[:, -1]
        elif self.kind == "tcn":
            summary = self.body(x.transpose(1, 2))[:, :, -1]
        elif self.kind == "mlp":
            summary = self.body(x.flatten(1))
        else:
            states, _ = self.recurrent(x[:, -RECURRENT_SPAN:])
            summary = self.join(torch.cat([self.body(x.flatten(1)), states[:, -1]], dim=1))
        quantiles = self.head(summary, x[:, -1, 0])
        return quantiles * level[:, :, None]
