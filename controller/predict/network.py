"""The predictor's network in PyTorch (training only; the appliance runs its ONNX export).

The graph is self-contained: it takes a window of raw Mbit/s samples with a
validity mask and returns p10/p50/p90 of the mean rate over the next 1 s and
5 s, in Mbit/s.  Inside, every input is divided by the window's mean level, so
one network serves a 5 Mbit/s DSL line and a 1 Gbit/s fibre alike.
"""

from __future__ import annotations

from typing import NamedTuple

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


class Columns(NamedTuple):
    """The per-tick features one by one [n, width], and the level [n, 1] they are relative to.

    The window statistics read the columns they need from here rather than
    slicing them back out of the stacked tensor (each slice is a copy in the graph).
    """

    ratio: torch.Tensor
    log_ratio: torch.Tensor
    valid: torch.Tensor
    changed: torch.Tensor
    level: torch.Tensor

    def stacked(self) -> torch.Tensor:
        """[n, width, FEATURES], the layout the MLP and the recurrent parts read."""
        return torch.stack([self.ratio, self.log_ratio, self.valid, self.changed], dim=-1)


def feature_columns(rates: torch.Tensor, valid: torch.Tensor) -> Columns:
    """Scale-free per-tick features and the level they are relative to."""
    count = valid.sum(dim=1, keepdim=True).clamp(min=1.0)
    level = ((rates * valid).sum(dim=1, keepdim=True) / count).clamp(min=LEVEL_FLOOR)
    ratio = (rates / level).clamp(max=RATIO_CEILING)
    step = (ratio[:, 1:] - ratio[:, :-1]).abs()
    both = valid[:, 1:] * valid[:, :-1]
    # The first tick has no predecessor: it never counts as changed.
    changed = F.pad((step > SAME_SAMPLE).float() * both, (1, 0))
    return Columns(ratio, torch.log(ratio + LOG_OFFSET), valid, changed, level)


def quantiles_from_raw(raw: torch.Tensor, last_ratio: torch.Tensor, members: int = 0) -> torch.Tensor:
    """[..., n, horizons * 4] head outputs -> ordered, non-negative quantiles [..., n, horizons, 3].

    The median is a gated blend of the last sample and a learned level: within a
    run of held samples the next value is the last one exactly, and a saturated
    gate can say so, where an additive correction would always leave some noise.
    The band is built outward from the median.  `members` as for anchored_quantiles.
    """
    raw = per_horizon(raw, 4, members)
    gate = torch.sigmoid(raw[..., 3])
    learned = F.softplus(raw[..., 1] + 1.0)
    p50 = gate * last_ratio[:, None] + (1 - gate) * learned
    p10 = F.relu(p50 - F.softplus(raw[..., 0]))
    p90 = p50 + F.softplus(raw[..., 2])
    return torch.stack([p10, p50, p90], dim=-1)


def per_horizon(raw: torch.Tensor, width: int, members: int) -> torch.Tensor:
    """Head outputs [(members,) n, horizons * width] -> [(members,) n, horizons, width], by a constant shape."""
    leading = (members, -1) if members else (-1,)
    return raw.reshape(leading + (len(HORIZONS), width))


def anchored_quantiles(raw: torch.Tensor, anchors: torch.Tensor, members: int = 0) -> torch.Tensor:
    """[..., n, horizons * (anchors + 4)] head outputs -> quantiles [..., n, horizons, 3].

    The median is a learned convex mix of anchors (the last sample and the mean
    of the newest k ticks for each span k, all ratios to the level) and a free
    learned level: the mean over the next seconds is mostly some recent mean,
    and a softmax over exact means states it more precisely than an MLP can
    compute it.  The band is built outward from the median.  `members` > 0
    says raw has a leading members axis (a static size, so the graph reshapes
    without shape arithmetic).
    """
    count = len(SCALES)
    raw = per_horizon(raw, count + 4, members)
    learned = F.softplus(raw[..., 1] + 1.0)
    mix = torch.softmax(raw[..., 3:], dim=-1)
    p50 = (mix[..., :count] * anchors[:, None, :]).sum(dim=-1) + mix[..., count] * learned
    p10 = F.relu(p50 - F.softplus(raw[..., 0]))
    p90 = p50 + F.softplus(raw[..., 2])
    return torch.stack([p10, p50, p90], dim=-1)


# The hybrid's recurrent part: small and short, as ONNX runs a GRU step by step
# (its cost grows with the square of its width).  RECURRENT_HIDDEN is the
# default width; a recipe may set another.
RECURRENT_SPAN = 30
RECURRENT_HIDDEN = 32

# The "scales" kind summarises the newest k ticks for each k here (ratios to
# the level): the mean of each span is the natural forecast of a mean over the
# next seconds, and the extremes and spread of each span say how far to trust
# the newest samples.  An MLP would have to learn the extremes from raw ticks.
SCALES = (1, 2, 3, 5, 10, 20, 30, 60)
STATISTICS = 6  # per span: mean, log mean, share of valid ticks, log max, log min, standard deviation
# A run of held samples longer than this many ticks reads as "held a long time".
RUN_CAP = 10


def span_masks(window: int) -> torch.Tensor:
    """[len(SCALES), window]: 1 on the newest k ticks of the window for each span k."""
    spans = torch.zeros(len(SCALES), window)
    for i, k in enumerate(SCALES):
        spans[i, window - min(k, window):] = 1.0
    return spans


def scale_statistics(columns: Columns, spans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-scale window statistics [n, STATISTICS * spans + 1] from the per-tick features,
    and the anchors of the anchored head [n, spans]: the last sample and each longer span's mean.

    Written as a few whole-tensor operations (matrix products with the span
    masks), with every shape a constant of the graph: onnxruntime's cost on
    this small graph is per operator, and shape arithmetic is operators too.
    The window must hold at least RUN_CAP ticks.
    """
    ratio, valid, changed = columns.ratio, columns.valid, columns.changed
    count = valid @ spans.T
    safe = count.clamp(min=1.0)
    measured = ratio * valid
    mean = (measured @ spans.T) / safe
    square = ((measured * ratio) @ spans.T) / safe
    spread = torch.sqrt((square - mean * mean).clamp(min=0.0) + 1e-6)
    # Ratios are never negative, so zeroing the ticks outside a span (or not
    # measured) leaves its maximum; an empty span's is 0.
    high = (measured[:, None, :] * spans[None]).amax(dim=2)
    # For the minimum, those ticks read as the ceiling instead (x * 1 + 0 and
    # x * 0 + ceiling are exact); an empty span's minimum is 0.
    lowest = torch.where(valid > 0, ratio, RATIO_CEILING)
    low = (lowest[:, None, :] * spans[None] + RATIO_CEILING * (1.0 - spans[None])).amin(dim=2)
    low = torch.where(count > 0, low, 0.0)
    # Ticks since the newest change (capped): where a held run stands in its cycle.
    recent = changed[:, -RUN_CAP:]
    position = torch.arange(1, RUN_CAP + 1, dtype=recent.dtype)[None, :]
    since_change = (RUN_CAP - (recent * position).amax(dim=1, keepdim=True)) / RUN_CAP
    shares = count / spans.sum(dim=1)[None, :]
    logs = torch.log(torch.cat([mean, high, low], dim=1) + LOG_OFFSET)
    anchors = torch.cat([ratio[:, -1:], mean[:, 1:]], dim=1)
    return torch.cat([mean, shares, spread, logs, since_change], dim=1), anchors


def scale_statistics_width() -> int:
    return STATISTICS * len(SCALES) + 1


class MemberBlock(nn.Module):
    """`members` independent two-layer MLPs with quantile heads, run as a few batched products.

    Member i owns its slice of the first layer's outputs and its own second
    layer and head, so the members learn independently; batching only saves
    onnxruntime operators.
    """

    def __init__(self, width: int, hidden: int, members: int, head: str = "gate"):
        super().__init__()
        self.members, self.hidden, self.head = members, hidden, head
        outputs = head_outputs(head)
        self.first = nn.Linear(width, members * 4 * hidden)
        self.second = nn.Parameter(torch.empty(members, 4 * hidden, hidden))
        self.second_bias = nn.Parameter(torch.empty(members, 1, hidden))
        self.out = nn.Parameter(torch.empty(members, hidden, outputs))
        self.out_bias = nn.Parameter(torch.empty(members, 1, outputs))
        # nn.Linear's default initialisation, per member.
        for weight, bias, fan_in in ((self.second, self.second_bias, 4 * hidden),
                                     (self.out, self.out_bias, hidden)):
            bound = 1.0 / fan_in ** 0.5
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    def forward(self, joined: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        first = F.relu(self.first(joined)).view(-1, self.members, 4 * self.hidden).transpose(0, 1)
        second = F.relu(torch.matmul(first, self.second) + self.second_bias)
        raw = torch.matmul(second, self.out) + self.out_bias
        if self.head == "anchors":
            return anchored_quantiles(raw, anchors, self.members)
        return quantiles_from_raw(raw, anchors[:, 0], self.members)


def head_outputs(head: str) -> int:
    if head == "gate":
        return len(HORIZONS) * 4
    if head == "anchors":
        return len(HORIZONS) * (len(SCALES) + 4)
    raise ValueError(f"network head must be gate or anchors, got {head!r}")


class RateNetwork(nn.Module):
    """kind: gru | lstm (recurrent over the window), tcn (dilated causal convolutions), mlp,
    hybrid (an MLP over the whole window beside a small GRU over its newest RECURRENT_SPAN ticks),
    scales (an ensemble of `members` MLPs over the window and its multi-scale statistics,
    whose quantiles are averaged), or ensemble (as scales, each member also reading the last
    state of one shared GRU over the newest RECURRENT_SPAN ticks)."""

    def __init__(self, kind: str = "gru", hidden: int = 32, window: int = 30, members: int = 1,
                 head: str = "gate", recurrent_hidden: int = RECURRENT_HIDDEN):
        super().__init__()
        self.kind, self.hidden, self.window, self.head_kind = kind, hidden, window, head
        self.members = members if kind in ("scales", "ensemble") else 1
        outputs = head_outputs(head)
        if head == "anchors" and kind not in ("hybrid", "scales", "ensemble"):
            raise ValueError(f"the anchors head needs the window statistics of hybrid, scales or ensemble, not {kind!r}")
        if head == "anchors" or kind in ("scales", "ensemble"):
            if window < RUN_CAP:
                raise ValueError(f"the window statistics need a window of at least {RUN_CAP} ticks, got {window}")
            self.register_buffer("spans", span_masks(window))
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
            self.recurrent = nn.GRU(FEATURES, recurrent_hidden, batch_first=True)
            statistics = scale_statistics_width() if head == "anchors" else 0
            self.join = nn.Sequential(nn.Linear(hidden + recurrent_hidden + statistics, hidden), nn.ReLU())
        elif kind == "scales":
            self.block = MemberBlock(FEATURES * window + scale_statistics_width(), hidden, self.members, head)
            return
        elif kind == "ensemble":
            # The GRU is most of the graph's run time, so the members share one
            # and only the cheap MLPs are repeated.
            self.recurrent = nn.GRU(FEATURES, recurrent_hidden, batch_first=True)
            self.block = MemberBlock(FEATURES * window + scale_statistics_width() + recurrent_hidden,
                                     hidden, self.members, head)
            return
        else:
            raise ValueError(f"network kind must be gru, lstm, tcn, mlp, hybrid, scales or ensemble, got {kind!r}")
        self.head = nn.Linear(hidden, outputs)

    def forward_members(self, rates: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Each member's quantiles [members, n, 2, 3] in Mbit/s (training scores every member)."""
        columns = feature_columns(rates, valid)
        x, level = columns.stacked(), columns.level
        if self.kind in ("scales", "ensemble"):
            statistics, anchors = scale_statistics(columns, self.spans)
            parts = [x.flatten(1), statistics]
            if self.kind == "ensemble":
                parts.append(self.recurrent_state(x))
            return self.block(torch.cat(parts, dim=1), anchors) * level[None, :, :, None]
        if self.kind in ("gru", "lstm"):
            states, _ = self.body(x)
            summary = states[:, -1]
        elif self.kind == "tcn":
            summary = self.body(x.transpose(1, 2))[:, :, -1]
        elif self.kind == "mlp":
            summary = self.body(x.flatten(1))
        else:
            parts = [self.body(x.flatten(1)), self.recurrent_state(x)]
            if self.head_kind == "anchors":
                statistics, anchors = scale_statistics(columns, self.spans)
                parts.append(statistics)
            summary = self.join(torch.cat(parts, dim=1))
        if self.head_kind == "anchors":
            quantiles = anchored_quantiles(self.head(summary), anchors)
        else:
            quantiles = quantiles_from_raw(self.head(summary), columns.ratio[:, -1])
        return (quantiles * level[:, :, None])[None]

    def recurrent_state(self, x: torch.Tensor) -> torch.Tensor:
        """The small GRU's last state over the newest RECURRENT_SPAN ticks [n, recurrent_hidden].

        Its final-state output, not the last row of every state: the export
        then skips transposing all the states only to keep one row.
        """
        _, last = self.recurrent(x[:, -RECURRENT_SPAN:])
        return last[0]

    def forward(self, rates: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # Averaging members' quantiles keeps each row ordered and non-negative.
        members = self.forward_members(rates, valid)
        return members[0] if self.members == 1 else members.mean(dim=0)

