"""Export CLI: a fine-tuning checkpoint -> ONNX model with the plugin's metadata contract.

    python -m sarlulc.training.export --checkpoint runs/lulc/best.pt --out model/weights/lulc.onnx

The graph has a fixed H = W = tile size (Swin's window padding and shift masks are baked in for
that size, as CONTRACT.md allows) and a dynamic batch. After writing, the file is read back
through ModelContract.from_onnx and run in ONNX Runtime next to torch on random input; the
largest absolute difference of the logits is printed and must stay under --tolerance.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings

import numpy as np
import onnx
import torch

from ..products import LULC_CLASSES, WATER_CLASSES
from ..inference.contract import ACTIVATION_OF_TASK, ClassInfo, InputDistribution, ModelContract
from ..networks.configs import NetConfig
from .input_statistics import Normalisation
from ..networks.segmentor import Segmentor
from ..errors import gdal_exceptions

DEFAULT_GSD_M = 10.0
OPSET = 17


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sarlulc.training.export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=pathlib.Path, help="best.pt or last.pt of sarlulc.training.train")
    p.add_argument("--out", required=True, type=pathlib.Path, help="ONNX file to write")
    p.add_argument("--tile-size", type=int, default=256, help="fixed input edge of the graph, px (multiple of 32)")
    p.add_argument("--tile-overlap", type=int, default=64, help="default overlap the plugin uses, px")
    p.add_argument("--gsd", type=float,
                   help=f"ground sampling distance the model expects, m (default: the model grid it was trained on, "
                        f"{DEFAULT_GSD_M:g} m for checkpoints that do not record one)")
    p.add_argument("--water-threshold", type=float, default=0.5, help="default probability threshold (water task)")
    p.add_argument("--water-threshold-relative", type=float,
                   help="default threshold for relative (8-bit) inputs, when it differs (water task)")
    p.add_argument("--model-name", help="name shown in the plugin's log (default: from the checkpoint)")
    p.add_argument("--trained-on", default="", help="what the model was trained on, shown in the log")
    p.add_argument("--input-distribution", metavar="JSON",
                   help='training backscatter the plugin checks inputs against (CONTRACT.md), e.g. '
                        '\'{"scene_median_db": [-14, -6], "pixel_db_percentiles": {"1": -26, "50": -10, "99": 1.5}}\' '
                        '(default: the one training recorded in the checkpoint, if any)')
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed |ORT - torch| logit difference")
    return p.parse_args(argv)


def contract_for(task: str, normalisation: Normalisation, tile_size: int, tile_overlap: int, gsd_m: float,
                 water_threshold: float, model_name: str, trained_on: str,
                 input_distribution: InputDistribution | None = None,
                 water_threshold_relative: float | None = None, training: str | None = None) -> ModelContract:
    legend = WATER_CLASSES if task == "water" else LULC_CLASSES
    return ModelContract(
        task=task, classes=tuple(ClassInfo(code, name, color) for code, name, color in legend),
        output_activation=ACTIVATION_OF_TASK[task], input_units="db",
        norm_clip=tuple(normalisation.norm_clip), norm_mean=normalisation.norm_mean, norm_std=normalisation.norm_std,
        norm_mode=normalisation.norm_mode, gsd_m=gsd_m, tile_size=tile_size, tile_overlap=tile_overlap,
        water_threshold=water_threshold if task == "water" else None, model_name=model_name, trained_on=trained_on,
        input_distribution=input_distribution,
        water_threshold_relative=water_threshold_relative if task == "water" else None, training=training)


def load_model(checkpoint_path: pathlib.Path) -> tuple[Segmentor, dict]:
    checkpoint = torch.load(checkpoint_path, map_location="cpu")
    if "net_config" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"'{checkpoint_path}' is not a checkpoint of sarlulc.training.train (best.pt / last.pt); "
                         f"an encoder.pt from pretraining cannot be exported on its own.")
    model = Segmentor(NetConfig.from_dict(checkpoint["net_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint


def export_onnx(model: Segmentor, contract: ModelContract, out: pathlib.Path) -> None:
    """Write the graph (fixed tile size, dynamic batch) and the contract's metadata_props."""
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 1, contract.tile_size, contract.tile_size)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but fits a fixed-size graph; its tracer warnings say
        # that shapes become constants, which is the intent here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(out), dynamo=False, opset_version=OPSET,
                          input_names=["sar"], output_names=["logits"],
                          dynamic_axes={"sar": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load(str(out))
    del graph.metadata_props[:]
    for key, value in contract.to_metadata().items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))


def parity(model: Segmentor, path: pathlib.Path, tile_size: int, batch: int = 2, seed: int = 0) -> float:
    """Largest |ONNX Runtime - torch| logit difference on random normalised input of ``batch`` tiles."""
    import onnxruntime

    x = np.random.default_rng(seed).standard_normal((batch, 1, tile_size, tile_size)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        torch_out = model(torch.from_numpy(x)).numpy()
    return float(np.abs(onnx_out - torch_out).max())


@gdal_exceptions()
def main(argv=None) -> int:
    args = parse_args(argv)
    model, checkpoint = load_model(args.checkpoint)
    task = checkpoint["task"]
    channels = model.config.num_classes
    expected = 1 if task == "water" else len(LULC_CLASSES)
    if channels != expected:
        raise SystemExit(f"The checkpoint's network has {channels} output channels but a {task} model needs {expected}.")
    config = model.config
    name = args.model_name or (f"SAR LULC Swin {task} ({'HR' if config.hr_injection else 'no HR'}, "
                               f"{'refine-up' if config.refine_up else 'bilinear x4'}, epoch {checkpoint['epoch']})")
    try:
        recorded = checkpoint.get("input_distribution")
        distribution_json = args.input_distribution or (json.dumps(recorded) if recorded else None)
        distribution = None
        if distribution_json:
            try:
                distribution = InputDistribution.from_json(distribution_json)
            except ValueError as error:
                source = "--input-distribution" if args.input_distribution else "the checkpoint's input distribution"
                raise ValueError(f"{source}: {error}") from None
        contract = contract_for(task, Normalisation.from_dict(checkpoint["normalisation"]), args.tile_size,
                                args.tile_overlap, args.gsd or checkpoint.get("gsd_m", DEFAULT_GSD_M),
                                args.water_threshold, name, args.trained_on,
                                distribution, args.water_threshold_relative)
        ModelContract.from_metadata(contract.to_metadata(), str(args.out), task)  # refuse bad options before exporting
    except Exception as error:
        raise SystemExit(f"Cannot export: {error}")
    export_onnx(model, contract, args.out)
    ModelContract.from_onnx(args.out, expected_task=task)
    difference = parity(model, args.out, args.tile_size)
    size_mb = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size_mb:.1f} MB, {task}, tile {args.tile_size}, opset {OPSET}); "
          f"max |onnxruntime - torch| = {difference:.2e}")
    if not difference <= args.tolerance:
        args.out.unlink()
        raise SystemExit(f"ONNX Runtime and torch disagree by {difference:.2e} > --tolerance {args.tolerance}; "
                         f"the file was removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
