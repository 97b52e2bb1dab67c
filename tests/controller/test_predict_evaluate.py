"""`evaluate` scores the model and the baselines on any folder of CSV traces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anabranch.controller.predict import baselines
from anabranch.controller.predict.__main__ import main
from anabranch.controller.predict.evaluate import evaluate, macro, scores
from anabranch.controller.predict.traces import TraceError, read_sources, read_trace


PARAMS = {"ewma": {"h1": {"alpha": 0.5}, "h5": {"alpha": 0.5}},
          "holt": {"h1": {"alpha": 0.5, "beta": 0.0}, "h5": {"alpha": 0.5, "beta": 0.0}}}


def write_trace(path: Path, mbps) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{t},{v}\n" for t, v in enumerate(mbps))
    path.write_text("t_s,mbps\n" + rows)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    write_trace(tmp_path / "dsl" / "a.csv", np.round(5 + rng.normal(0, 0.3, 40), 3))
    write_trace(tmp_path / "dsl" / "b.csv", np.round(4 + rng.normal(0, 0.3, 25), 3))
    write_trace(tmp_path / "fibre" / "nested" / "c.csv", np.round(900 + rng.normal(0, 40, 30), 1))
    write_trace(tmp_path / "fibre" / "too_short.csv", [900.0] * 12)
    return tmp_path


def run_json(capsys, *args: str) -> dict:
    assert main(["evaluate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_prints_the_report_for_every_source(folder, capsys):
    report = run_json(capsys, "--traces", str(folder))
    assert report["sources"] == ["dsl", "fibre"]
    assert set(report["baselines"]) == {"last", "mean5", "hmean5", "ewma", "holt"}
    for scope in [report] + list(report["per_source"].values()):
        for name, by_horizon in [("model", scope["model"])] + list(scope["baselines"].items()):
            for key in ("h1", "h5"):
                assert set(by_horizon[key]) == {"mae", "nmae", "smape"}, (name, key)
                assert all(np.isfinite(v) and v >= 0 for v in by_horizon[key].values())
    # Points: t = 10 .. len - H for each trace, the 12 s trace only at 1 s.
    assert report["per_source"]["dsl"]["points"] == {"h1": 30 + 15, "h5": 26 + 11}
    assert report["per_source"]["fibre"]["points"] == {"h1": 20 + 2, "h5": 16}
    assert report["baseline_params"]["ewma"]["h1"]["alpha"] > 0


def test_evaluate_handles_a_source_the_model_never_saw(tmp_path, capsys):
    rng = np.random.default_rng(1)
    write_trace(tmp_path / "satellite" / "leo.csv", np.abs(rng.normal(150, 60, 50)).round(2))
    report = run_json(capsys, "--traces", str(tmp_path))
    assert report["sources"] == ["satellite"]
    assert report["model"]["h5"]["nmae"] == report["per_source"]["satellite"]["model"]["h5"]["nmae"]


def test_evaluate_table_without_json(folder, capsys):
    assert main(["evaluate", "--traces", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("macro") and "h5 nMAE" in out and "fibre" in out


def test_a_bad_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--traces", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    write_trace(tmp_path / "empty_source" / "x.txt", [1.0])
    assert main(["evaluate", "--traces", str(tmp_path)]) == 2
    assert "no *.csv traces found" in capsys.readouterr().err


def test_a_bad_header_names_the_file(tmp_path):
    path = tmp_path / "s" / "bad.csv"
    path.parent.mkdir()
    path.write_text("time,rate\n0,1\n")
    with pytest.raises(TraceError, match=r"bad.csv: first line must be the header 't_s,mbps'"):
        read_trace(path)


def test_negative_and_nan_samples_read_as_zero(tmp_path):
    path = tmp_path / "s" / "t.csv"
    path.parent.mkdir()
    path.write_text("t_s,mbps\n0,1.5\n1,-2\n2,nan\n")
    assert read_trace(path).tolist() == [1.5, 0.0, 0.0]


def test_csvs_directly_in_the_folder_form_a_source_named_after_it(tmp_path):
    write_trace(tmp_path / "lab" / "a.csv", [1.0] * 20)
    assert list(read_sources(tmp_path / "lab")) == ["lab"]


def test_scores_on_hand_computed_values():
    result = scores(np.array([1.0, 3.0, 0.0]), np.array([2.0, 3.0, 0.0]))
    assert result["mae"] == pytest.approx(1 / 3)
    assert result["nmae"] == pytest.approx((1 / 3) / (5 / 3))
    # sMAPE: 2|1-2|/(1+2) = 2/3, then 0, and 0-vs-0 counts as no error.
    assert result["smape"] == pytest.approx(100 * (2 / 3) / 3)


def test_macro_weighs_every_source_the_same():
    assert macro([{"mae": 1.0, "nmae": 0.1, "smape": 10.0},
                  {"mae": 3.0, "nmae": 0.3, "smape": 30.0}]) == {"mae": 2.0, "nmae": 0.2, "smape": 20.0}


def test_baseline_scores_in_the_report_match_a_hand_computation(tmp_path):
    trace = np.array([1.0, 2.0] * 8)  # 16 s alternating
    write_trace(tmp_path / "alt" / "x.csv", trace)
    report = evaluate(read_sources(tmp_path), PARAMS)
    # t = 10..15: last is always wrong by 1; the actual mean is 1.5.
    assert report["baselines"]["last"]["h1"]["mae"] == pytest.approx(1.0)
    assert report["baselines"]["last"]["h1"]["nmae"] == pytest.approx(1 / 1.5)
    # mean5 of an alternating series is 1.6 before a 1 and 1.4 before a 2.
    assert report["baselines"]["mean5"]["h1"]["mae"] == pytest.approx(0.6)
    # hmean5: 5 / 3.5 before a 1, 5 / 4 before a 2.
    assert report["baselines"]["hmean5"]["h1"]["mae"] == pytest.approx((5 / 3.5 - 1 + 2 - 1.25) / 2)
    assert report["best_baseline"]["h1"] == "hmean5"
    assert report["per_source"]["alt"]["model"] == {}
    assert list(report["baselines"]) == list(baselines.NAMES)


def test_a_horizon_no_trace_is_long_enough_for_reads_as_nan(tmp_path):
    write_trace(tmp_path / "tiny" / "x.csv", [1.0] * 12)
    report = evaluate(read_sources(tmp_path), PARAMS)
    assert report["per_source"]["tiny"]["points"] == {"h1": 2, "h5": 0}
    assert np.isnan(report["baselines"]["last"]["h5"]["nmae"]) and report["best_baseline"]["h5"] is None
    assert report["baselines"]["last"]["h1"]["nmae"] == 0.0


def test_evaluate_without_tuned_parameters_says_where_to_find_them(tmp_path):
    write_trace(tmp_path / "s" / "x.csv", [1.0] * 20)
    with pytest.raises(ValueError, match="baseline ewma \\(h1\\): needs its tuned alpha; take them from the model card"):
        evaluate(read_sources(tmp_path), {})


@pytest.mark.shared_data
@pytest.mark.parametrize("source", ["5gophers", "hsdpa"])
def test_card_figures_reproduce_on_the_shared_validation_traces(shared_data, source):
    """Re-scoring two small validation sources gives the card's numbers, and the model wins there."""
    from anabranch.controller.predict.evaluate import evaluate_folder
    from anabranch.controller.predict.runtime import default_model_path, read_card

    report = evaluate_folder(shared_data / "traces" / "validation" / source)
    card = read_card(default_model_path())["metrics"]["validation"]["per_source"][source]
    for key in ("h1", "h5"):
        model = report["per_source"][source]["model"][key]["nmae"]
        assert model == pytest.approx(card["model"][key]["nmae"], abs=1e-4)
        for name, scores_by_horizon in report["per_source"][source]["baselines"].items():
            assert scores_by_horizon[key]["nmae"] == pytest.approx(card["baselines"][name][key]["nmae"], abs=1e-4)
            assert model < scores_by_horizon[key]["nmae"], (name, key)


def test_a_training_recipe_replaces_settings_and_resolves_teachers_beside_it(tmp_path):
    from anabranch.controller.predict.__main__ import recipe
    from anabranch.controller.predict.train import TrainConfig

    path = tmp_path / "recipes" / "r.json"
    path.parent.mkdir()
    path.write_text('{"small_source_points": 20000, "teachers": ["../m/model.onnx"], "distill_weight": 0.5}')
    config = recipe(TrainConfig(seed=3), path)
    assert config.small_source_points == 20000 and config.distill_weight == 0.5 and config.seed == 3
    assert config.teachers == (str((tmp_path / "m" / "model.onnx").resolve()),)


def test_a_bad_training_recipe_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "r.json"
    for text, message in (('{"stepz": 3}', "unknown training settings stepz"),
                          ("[1]", "must hold a JSON object"), ("{", "r.json: ")):
        bad.write_text(text)
        assert main(["train", "--traces", str(tmp_path), "--recipe", str(bad), "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err


def test_a_recipe_whose_teacher_is_not_trained_yet_says_so_before_training(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text('{"teachers": ["t/model.onnx"], "distill_weight": 0.5}')
    assert main(["train", "--traces", str(tmp_path), "--recipe", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"teacher model {tmp_path.resolve() / 't' / 'model.onnx'} is missing" in err and "make model" in err


def test_the_committed_model_is_its_recipe_distilled_from_the_teacher_recipes():
    import dataclasses

    from anabranch.controller.predict.__main__ import recipe
    from anabranch.controller.predict.runtime import CARD_FILE
    from anabranch.controller.predict.train import TrainConfig

    # The recipes are a source-tree file (for training), not installed with the package.
    recipes = Path(__file__).resolve().parents[2] / "controller" / "predict" / "recipes"
    card = json.loads((recipes.parent / CARD_FILE).read_text())["training"]

    def settings(config: TrainConfig) -> dict:
        return {k: v for k, v in dataclasses.asdict(config).items() if k not in ("kinds", "notes", "teachers")}

    defaults = settings(TrainConfig())

    def recorded(training: dict) -> dict:
        # A card written before a setting existed was trained with its default.
        return {k: training.get(k, v) for k, v in defaults.items()}

    def teacher_names(config: TrainConfig) -> list[str]:
        # Each teacher is the model of the recipe named like its build folder.
        return [Path(t).parent.name for t in config.teachers]

    # Two generations: the shipped model is distilled from a first distilled
    # model and four of the trained models that one was distilled from.
    student = recipe(TrainConfig(), recipes / "distilled.json")
    assert recorded(card) == settings(student)
    first = recipe(TrainConfig(), recipes / "distilled-first.json")
    teachers = sorted(p.stem for p in recipes.glob("teacher-*.json"))
    assert sorted(teacher_names(first)) == teachers
    assert "distilled-first" in teacher_names(student)
    assert set(teacher_names(student)) - {"distilled-first"} <= set(teachers)
    assert len(card["teachers"]) == len(student.teachers)
    for name, entry in zip(teacher_names(student), card["teachers"]):
        assert name in entry["file"]
        teacher = settings(recipe(TrainConfig(), recipes / f"{name}.json"))
        assert recorded(entry["training"]) == teacher, name
