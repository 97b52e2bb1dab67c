"""Offline tools of the predictor: `train` (needs the `train` extra) and `evaluate`.

    python -m anabranch.controller.predict train --traces ../shared/data/traces
    python -m anabranch.controller.predict evaluate --traces ../shared/data/traces/validation --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .runtime import ModelError
from .traces import TraceError


def _table(report: dict) -> str:
    lines = []
    names = ["model"] + list(report["baselines"])
    for source in ["macro"] + report["sources"]:
        lines.append(f"{source}")
        for key in ("h1", "h5"):
            cells = []
            for name in names:
                scope = report if source == "macro" else report["per_source"][source]
                scores = scope["model"] if name == "model" else scope["baselines"][name]
                if key in scores:
                    cells.append(f"{name} {scores[key]['nmae']:.4f}")
            lines.append(f"  {key} nMAE  " + "  ".join(cells))
    return "\n".join(lines)


class RecipeError(ValueError):
    """A --recipe file that cannot be read or names unknown settings."""


def recipe(config, path: Path):
    """`config` with the fields of the JSON object in `path`; unknown fields are an error."""
    import dataclasses

    try:
        fields = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path}: {exc}") from None
    if not isinstance(fields, dict):
        raise RecipeError(f"{path}: must hold a JSON object of training settings")
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise RecipeError(f"{path}: unknown training settings {', '.join(unknown)}")
    if "teachers" in fields:
        fields["teachers"] = tuple(str((path.parent / t).resolve()) for t in fields["teachers"])
    if "kinds" in fields:
        fields["kinds"] = tuple(fields["kinds"])
    return dataclasses.replace(config, **fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anabranch.controller.predict",
                                     description="Train or evaluate the bandwidth predictor on CSV traces.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fit on DIR/train, select on DIR/validation, write the ONNX model and card")
    train.add_argument("--traces", type=Path, required=True, help="folder with train/ and validation/ subfolders")
    train.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                       help="where to write model.onnx and model.json (default: this package)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--kinds", default="hybrid",
                       help="comma-separated architectures to train and select among "
                            "(hybrid, ensemble, scales, mlp, gru, lstm, tcn); the default is the one selected")
    train.add_argument("--steps", type=int, default=None, help="optimiser steps per architecture")
    train.add_argument("--recipe", type=Path, default=None,
                       help="JSON object of training settings (TrainConfig fields) that replace the defaults; "
                            "teacher paths in it are relative to the file")
    train.add_argument("--threads", type=int, default=1,
                       help="torch threads (1, as the committed model was trained: float sums depend on it)")

    evaluate = commands.add_parser("evaluate", help="score the model and the baselines on a folder of traces")
    evaluate.add_argument("--traces", type=Path, required=True, help="folder with one subfolder of CSVs per source")
    evaluate.add_argument("--model", type=Path, default=None, help="ONNX model (default: the committed one)")
    evaluate.add_argument("--json", action="store_true", help="print the full report as JSON")

    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            from .train import TrainConfig, train as run_training

            config = TrainConfig(kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
                                 seed=args.seed, threads=args.threads)
            if args.recipe is not None:
                config = recipe(config, args.recipe)
            if args.steps is not None:
                config.steps = args.steps
            run_training(args.traces, args.out, config, log=lambda m: print(m, file=sys.stderr, flush=True))
            return 0
        from .evaluate import evaluate_folder

        report = evaluate_folder(args.traces, args.model)
        print(json.dumps(report, indent=2) if args.json else _table(report))
        return 0
    except (TraceError, ModelError, RecipeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
