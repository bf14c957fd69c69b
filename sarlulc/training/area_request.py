"""What a training run for an area asks for (TrainRequest), what it gives back, and what is refused
before any pixel is read; the run itself and its command line are sarlulc/training/finetune.py."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

from ..sar.units import ALOS2_CALIBRATION_FACTOR_DB, UNITS_FLAGS, InputUnits
from ..errors import InferenceError
from ..rasters.output_checks import check_distinct_files


START_BUNDLED, START_SCRATCH = "bundled", "scratch"


class TrainingRefused(ValueError):
    """Input that cannot train a model; refused before any training, the message says what to do."""


class TrainingCancelled(Exception):
    """The user cancelled; nothing was written."""


@dataclass
class TrainRequest:
    """One training run. ``references``: one for all rasters, or one per raster (same order)."""

    rasters: list[str]
    references: list[str]
    out_model: str
    report: str | None = None
    task: str = "lulc"
    class_field: str | None = None
    remap: str | None = None  # a shipped table's name (sarlulc/training/remap_tables) or a CSV file
    band: int = 1
    input_units: str = "auto"  # a key of units.UNITS_FLAGS or an InputUnits value
    calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB
    start: str = START_BUNDLED  # "bundled", "scratch" or a plugin .onnx model
    epochs: int = 6
    minutes: float | None = None  # time budget (training stops at the end of the epoch that reaches it)
    samples_per_epoch: int = 512
    batch_size: int = 8
    crop_size: int = 128
    lr: float = 2e-4
    validation_share: float = 0.2
    block_size: int = 128
    level_jitter: float = 1.5
    gain_jitter: float = 0.1
    balanced_share: float = 0.3
    alpha: float = 0.0  # class-weight tempering; 0 (unweighted) kept built-up best on San Francisco (README)
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    classes: str | None = None  # class table CSV (code,name,color): the model's own land-cover classes


@dataclass
class TrainResult:
    model_path: str
    report_path: str | None
    best_epoch: int
    start_scores: dict
    trained_scores: dict
    history: list = field(default_factory=list)


def units_of(text: str) -> InputUnits:
    """Input units as the CLI spells them (``db``) or as Processing shows them (``dB``)."""
    units = UNITS_FLAGS.get(text.lower()) or next((u for u in InputUnits if u.value.lower() == text.lower()), None)
    if units is None:
        raise TrainingRefused(f"Input units '{text}': choose one of {', '.join(UNITS_FLAGS)}.")
    return units


def check_request(request: TrainRequest) -> None:
    """Refuse impossible settings before reading any pixel."""
    if not request.rasters:
        raise TrainingRefused("Give at least one SAR raster.")
    if len(request.references) not in (1, len(request.rasters)):
        raise TrainingRefused(f"Give one reference for all SAR rasters or one per raster: got {len(request.rasters)} "
                              f"rasters and {len(request.references)} references.")
    if request.task not in ("lulc", "water"):
        raise TrainingRefused(f"Task '{request.task}': choose lulc or water.")
    if pathlib.Path(request.out_model).suffix.lower() != ".onnx":
        raise TrainingRefused(f"The model file '{request.out_model}' must end in .onnx.")
    if request.report and pathlib.Path(request.report).suffix.lower() not in (".html", ".htm"):
        raise TrainingRefused(f"The report '{request.report}' must end in .html.")
    if not 0.0 < request.validation_share < 1.0:
        raise TrainingRefused(f"The validation share must lie between 0 and 1 (got {request.validation_share}).")
    if request.epochs < 1 or (request.minutes is not None and request.minutes <= 0):
        raise TrainingRefused("Give at least one epoch, and a positive time budget if any.")
    if request.crop_size % 32 or request.crop_size < 64:
        raise TrainingRefused(f"The crop size must be a multiple of 32, at least 64 (got {request.crop_size}).")
    if request.batch_size < 1 or request.samples_per_epoch < request.batch_size:
        raise TrainingRefused("The batch size must be at least 1 and the crops per epoch at least one batch.")
    if request.block_size < 32:
        raise TrainingRefused(f"Validation blocks must be at least 32 px (got {request.block_size}).")
    if request.band < 1:
        raise TrainingRefused(f"Band {request.band}: bands count from 1.")
    if request.classes and request.task == "water":
        raise TrainingRefused("The water task has one class, water: a class table is for land cover.")
    units_of(request.input_units)
    inputs = {f"SAR raster {i + 1}": path for i, path in enumerate(request.rasters)}
    inputs.update({f"reference {i + 1}": path.split("|")[0] for i, path in enumerate(request.references)})
    inputs["class table"] = request.classes
    try:
        check_distinct_files({"model": request.out_model, "report": request.report}, inputs)
    except (ValueError, InferenceError) as error:
        raise TrainingRefused(str(error)) from None
