"""The training-side network pieces: window statistics, the anchored head, the contrast augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from anabranch.controller.predict.series import MIN_HISTORY
from anabranch.controller.predict.train import _contrast, _reversed, _spliced

NAN = np.nan


@pytest.mark.train
def test_window_statistics_match_a_hand_computation():
    import torch
    from anabranch.controller.predict.network import SCALES, feature_columns, scale_statistics, span_masks

    window = 12
    rates = torch.tensor([[0.0, 0.0, 2.0, 2.0, 4.0, 4.0, 4.0, 6.0, 6.0, 8.0, 8.0, 8.0]])
    valid = torch.ones_like(rates)
    valid[0, :2] = 0.0  # before the series began
    columns = feature_columns(rates, valid)
    level = columns.level
    statistics, anchors = scale_statistics(columns, span_masks(window))
    spans = len(SCALES)
    ratio = rates[0] / level[0, 0]
    mean, shares = statistics[0, :spans], statistics[0, spans:2 * spans]
    assert level[0, 0] == pytest.approx(52.0 / 10)
    # Span 5 covers the newest five ticks; span 60 is cut to the window and skips the two unmeasured ticks.
    assert mean[SCALES.index(5)] == pytest.approx(float(ratio[-5:].mean()), rel=1e-5)
    assert mean[SCALES.index(60)] == pytest.approx(1.0, rel=1e-5)
    assert shares[SCALES.index(60)] == pytest.approx(10 / 12)
    high, low = statistics[0, 4 * spans:5 * spans], statistics[0, 5 * spans:6 * spans]
    assert torch.exp(high[SCALES.index(10)]) - 0.05 == pytest.approx(float(ratio.max()), rel=1e-5)
    assert torch.exp(low[SCALES.index(60)]) - 0.05 == pytest.approx(float(ratio[2]), rel=1e-5)
    # The newest change was two ticks back (6 -> 8, then 8 held twice).
    assert statistics[0, -1] == pytest.approx(2 / 10)
    assert anchors[0, 0] == pytest.approx(float(ratio[-1]))
    assert anchors.shape == (1, spans)


@pytest.mark.train
def test_every_kind_and_head_gives_ordered_non_negative_quantiles():
    import torch
    from anabranch.controller.predict.network import RateNetwork

    torch.manual_seed(0)
    rates = torch.rand(16, 60) * 100
    rates[0] = 0.0
    valid = torch.ones(16, 60)
    valid[1, :50] = 0.0
    for kind, head, members in [("hybrid", "anchors", 1), ("hybrid", "gate", 1), ("scales", "anchors", 2),
                                ("ensemble", "anchors", 2)]:
        net = RateNetwork(kind, 16, 60, members, head).eval()
        q = net(rates, valid).detach()
        assert q.shape == (16, 2, 3)
        assert torch.isfinite(q).all() and (q >= 0).all()
        assert (q[..., 0] <= q[..., 1] + 1e-5).all() and (q[..., 1] <= q[..., 2] + 1e-5).all()
        assert net.forward_members(rates, valid).shape == (members, 16, 2, 3)


@pytest.mark.train
def test_the_anchors_head_needs_the_window_statistics():
    import torch  # noqa: F401
    from anabranch.controller.predict.network import RateNetwork

    with pytest.raises(ValueError, match="anchors head"):
        RateNetwork("gru", 16, 60, 1, "anchors")


def test_contrast_keeps_holds_zeros_and_gaps_and_warps_the_future_alike():
    windows = np.array([[NAN, 1.0, 1.0, 4.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    futures = np.array([[4.0, 4.0, 1.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    warped, warped_futures = _contrast(windows, futures, 1.0, 1.3, np.random.default_rng(1))
    assert np.isnan(warped[0, 0]) and warped[0, 4] == 0.0 and warped_futures[0, 3] == 0.0
    assert warped[0, 1] == warped[0, 2] and warped_futures[0, 0] == warped_futures[0, 1]
    assert warped[0, 3] == pytest.approx(warped_futures[0, 0])
    # A flat series sits at its level: no contrast to change.
    np.testing.assert_allclose(warped[1], 2.0)
    np.testing.assert_allclose(warped_futures[1], 2.0)
    assert not np.allclose(warped[0, 1:], windows[0, 1:])


def test_contrast_off_leaves_the_series_alone():
    windows = np.array([[1.0, 3.0]])
    futures = np.array([[2.0, 2.0, 2.0, 2.0, 2.0]])
    same, same_futures = _contrast(windows, futures, 0.0, 1.3, np.random.default_rng(0))
    assert same is windows and same_futures is futures


def test_a_reversed_window_stays_right_aligned_behind_its_missing_prefix():
    windows = np.array([[NAN, NAN, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0, 5.0],
                        [NAN, 1.0, NAN, 3.0, 4.0], [NAN, NAN, NAN, NAN, NAN]])
    np.testing.assert_array_equal(_reversed(windows), [[NAN, NAN, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0],
                                                       [NAN, 4.0, 3.0, NAN, 1.0], [NAN] * 5])


def test_a_spliced_window_ends_with_the_newer_windows_newest_samples():
    width = MIN_HISTORY + 5
    older = np.arange(1.0, width + 1)[None, :].repeat(200, axis=0)
    newer = -older
    spliced = _spliced(older, newer, np.random.default_rng(0))
    cuts = (spliced > 0).sum(axis=1)
    assert cuts.min() == 1 and cuts.max() == width - MIN_HISTORY
    for row, cut in zip(spliced, cuts):
        np.testing.assert_array_equal(row[:cut], older[0, width - cut:])
        np.testing.assert_array_equal(row[cut:], newer[0, cut:])


@pytest.mark.train
def test_the_onnx_export_computes_what_torch_computes(tmp_path):
    import onnxruntime
    import torch
    from anabranch.controller.predict.network import RateNetwork
    from anabranch.controller.predict.train import export

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # More series than the export traced (4), idle rows, a spike, and rows with a short history.
    rates = (10 ** rng.uniform(-1, 3, (37, 1)) * rng.lognormal(0, 0.5, (37, 60))).astype(np.float32)
    valid = np.ones_like(rates)
    valid[:10, :45] = 0.0
    rates *= valid
    rates[10] = 0.0
    rates[11, -1] = 1e5
    for kind, head, members in [("hybrid", "anchors", 1), ("hybrid", "gate", 1), ("ensemble", "anchors", 3)]:
        net = RateNetwork(kind, 16, 60, members, head).eval()
        path = tmp_path / f"{kind}-{head}.onnx"
        export(net, path, 60)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"rates": rates, "valid": valid})
        with torch.no_grad():
            want = net(torch.from_numpy(rates), torch.from_numpy(valid)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.onnx
def test_float16_weights_halve_the_file_and_keep_the_forecasts(tmp_path):
    # What export(..., float16_weights=True) does to the graph, on the committed
    # network (no torch needed).
    import onnx
    import onnxruntime
    from anabranch.controller.predict.runtime import default_model_path
    from anabranch.controller.predict.train import _store_float16

    rng = np.random.default_rng(1)
    rates = (10 ** rng.uniform(-1, 3, (50, 1)) * rng.lognormal(0, 0.5, (50, 60))).astype(np.float32)
    valid = np.ones_like(rates)
    valid[:5, :40] = 0.0
    rates *= valid
    model = onnx.load(str(default_model_path()))
    was_float32 = onnx.TensorProto.FLOAT in {w.data_type for w in model.graph.initializer if len(w.dims) == 2}
    paths = {"as shipped": tmp_path / "shipped.onnx", "float16": tmp_path / "half.onnx"}
    onnx.save(model, str(paths["as shipped"]))
    _store_float16(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(paths["float16"]))
    assert {w.data_type for w in model.graph.initializer if len(w.dims) == 2} == {onnx.TensorProto.FLOAT16}
    outputs = {}
    for name, path in paths.items():
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (outputs[name],) = session.run(None, {"rates": rates, "valid": valid})
    assert outputs["float16"].dtype == np.float32
    if was_float32:  # the weights are most of the file
        assert paths["float16"].stat().st_size < 0.55 * paths["as shipped"].stat().st_size
    np.testing.assert_allclose(outputs["float16"], outputs["as shipped"], rtol=2e-3,
                               atol=1e-3 * float(np.abs(outputs["as shipped"]).max()))

    # A weight beyond float16's range (65 504) would turn infinite: it stays float32.
    big = onnx.numpy_helper.from_array(np.full((8, 8), 1e6, np.float32), "big")
    small = onnx.numpy_helper.from_array(np.ones((8, 8), np.float32), "small")
    graph = onnx.helper.make_graph([], "g", [], [], initializer=[big, small])
    tiny = onnx.helper.make_model(graph)
    _store_float16(tiny)
    stored = {w.name: w.data_type for w in tiny.graph.initializer}
    assert stored == {"big": onnx.TensorProto.FLOAT, "small.float16": onnx.TensorProto.FLOAT16}


@pytest.mark.train
def test_the_window_statistics_need_a_window_of_at_least_run_cap_ticks():
    from anabranch.controller.predict.network import RUN_CAP, RateNetwork

    with pytest.raises(ValueError, match=f"at least {RUN_CAP} ticks"):
        RateNetwork("hybrid", 16, RUN_CAP - 1, 1, "anchors")


@pytest.mark.train
def test_the_gru_width_is_a_training_setting():
    import torch
    from anabranch.controller.predict.network import RECURRENT_HIDDEN, RateNetwork
    from anabranch.controller.predict.train import TrainConfig, describe_network

    assert TrainConfig().recurrent_hidden == RECURRENT_HIDDEN
    net = RateNetwork("hybrid", 16, 60, 1, "anchors", recurrent_hidden=8).eval()
    assert net.recurrent.hidden_size == 8
    assert net(torch.rand(4, 60), torch.ones(4, 60)).shape == (4, 2, 3)
    assert "GRU (8 units)" in describe_network("hybrid", 1, "anchors", 8)["layout"]
