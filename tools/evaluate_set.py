"""Score an ONNX model on a folder of simulated (or real) SAR/label pairs, end to end.

Each `<name>_sar.tif` goes through the plugin's own inference engine (exactly what the
Processing algorithms run); the confusion matrices of all scenes are summed, then written as
CSV, HTML and a JSON summary. Used by `make train-bundled` and the ablation runs.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from model.evaluation import Evaluation, evaluate, write_csv, write_html  # noqa: E402
from model.inference import engine  # noqa: E402
from model.net.data import find_pairs  # noqa: E402


def evaluate_set(model: pathlib.Path, task: str, folders: list[str], device: str = "cpu") -> Evaluation:
    """Run the model on every pair and return the summed confusion matrix."""
    run = engine.segment if task == "lulc" else engine.detect_water
    total: Evaluation | None = None
    pairs = find_pairs(folders)
    with tempfile.TemporaryDirectory() as tmp:
        for sar, label in pairs:
            prediction = pathlib.Path(tmp) / f"{pathlib.Path(sar).stem}_pred.tif"
            run(str(sar), str(prediction), model_path=str(model), options=engine.RunOptions(device=device))
            scene = evaluate(prediction, label, task=task)
            if total is None:
                total = scene
            elif scene.classes != total.classes:
                raise SystemExit(f"{sar}: class list differs from the first scene's; cannot sum matrices")
            else:
                total = Evaluation(task, total.classes, total.matrix + scene.matrix)
            prediction.unlink()
    if total is None:
        raise SystemExit(f"no <name>_sar.tif / <name>_label.tif pairs found in {folders}")
    return total


def summary(result: Evaluation, model: pathlib.Path, scenes: int) -> dict:
    water = result.water
    return {
        "model": str(model), "task": result.task, "scenes": scenes, "pixels": result.pixels,
        "miou": result.miou, "overall_accuracy": result.overall_accuracy,
        "per_class_iou": {m.name: m.iou for m in result.per_class},
        "water": None if water is None else {"iou": water.iou, "f1": water.f1,
                                             "precision": water.precision, "recall": water.recall},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, type=pathlib.Path, help="ONNX model with the SAR LULC contract")
    p.add_argument("--task", choices=("lulc", "water"), required=True)
    p.add_argument("--data", nargs="+", required=True, help="folders or list files of held-out pairs")
    p.add_argument("--out", required=True, type=pathlib.Path, help="folder for metrics.csv/.html/.json")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    result = evaluate_set(args.model, args.task, args.data, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(result, args.out / "metrics.csv", args.model.name, "held-out reference")
    write_html(result, args.out / "metrics.html", args.model.name, "held-out reference")
    info = summary(result, args.model, len(find_pairs(args.data)))
    (args.out / "metrics.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
