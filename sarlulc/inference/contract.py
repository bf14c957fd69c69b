"""The model contract: SAR LULC metadata stored in an ONNX file's ``metadata_props``.

CONTRACT.md (next to this file) is the specification; this module parses and validates it so
that a model missing a key, or made for the other task, is refused with a message naming it.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
from dataclasses import dataclass

from ..errors import ModelContractError

CONTRACT_VERSION = "1"
TASKS = ("lulc", "water")
ACTIVATION_OF_TASK = {"lulc": "softmax", "water": "sigmoid"}
SUPPORTED_INPUT_UNITS = ("db",)
TILE_MULTIPLE = 32
NORM_FIXED, NORM_SCENE, NORM_SCENE_LAND = "fixed", "scene", "scene-land"
NORM_MODES = (NORM_FIXED, NORM_SCENE, NORM_SCENE_LAND)
SCENE_NORM_MODES = (NORM_SCENE, NORM_SCENE_LAND)  # a level of the whole scene is removed before tiling
_REQUIRED_KEYS = ("sarlulc_contract", "task", "classes", "output_activation", "input_units",
                  "norm_clip", "norm_mean", "norm_std", "gsd_m", "tile_size", "tile_overlap")
COLOR_PATTERN = re.compile(r"^#[0-9a-fA-F]{6}$")
_SEE_CONTRACT = "See model/CONTRACT.md in the plugin folder for the metadata a model must carry."
# GDAL metadata items of every output raster saying which model made it (read back by the field maps).
PROVENANCE_MODEL, PROVENANCE_TRAINED_ON, PROVENANCE_TASK = "SARLULC_MODEL", "SARLULC_TRAINED_ON", "SARLULC_TASK"
PROVENANCE_KEYS = (PROVENANCE_MODEL, PROVENANCE_TRAINED_ON, PROVENANCE_TASK)


@dataclass(frozen=True)
class ClassInfo:
    """One output class: raster code, legend name and legend colour ("#rrggbb")."""

    code: int
    name: str
    color: str


@dataclass(frozen=True)
class InputDistribution:
    """The backscatter a model was trained on (optional key ``input_distribution``), so inputs far
    outside it can be flagged: the range of the training scenes' median sigma0 and percentiles of
    all training pixels, in dB."""

    scene_median_db: tuple[float, float]
    pixel_db_percentiles: tuple[tuple[float, float], ...]  # (percentile 0..100, dB), percentile ascending

    @classmethod
    def from_json(cls, text: str) -> "InputDistribution":
        """Parse the metadata value; raises ValueError saying what is wrong."""
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError("not valid JSON") from None
        if not isinstance(value, dict):
            raise ValueError('expected {"scene_median_db": [low, high], "pixel_db_percentiles": {"1": dB, ...}}')
        medians = value.get("scene_median_db")
        if (not isinstance(medians, list) or len(medians) != 2 or not all(_is_number(v) for v in medians)
                or medians[0] > medians[1]):
            raise ValueError("'scene_median_db' must be [low, high] in dB with low <= high")
        percentiles = value.get("pixel_db_percentiles")
        if not isinstance(percentiles, dict) or not percentiles:
            raise ValueError("'pixel_db_percentiles' must be a non-empty object {\"percentile\": dB}")
        pairs = []
        for key, db in percentiles.items():
            try:
                percentile = float(key)
            except ValueError:
                percentile = math.nan
            if not 0.0 <= percentile <= 100.0 or not _is_number(db):
                raise ValueError(f"'pixel_db_percentiles' entry {key!r}: {db!r} needs a percentile 0..100 "
                                 f"and a dB value")
            pairs.append((percentile, float(db)))
        pairs.sort()
        if any(later[1] < earlier[1] for earlier, later in zip(pairs, pairs[1:])):
            raise ValueError("'pixel_db_percentiles' must not decrease as the percentile grows")
        return cls((float(medians[0]), float(medians[1])), tuple(pairs))

    def to_json(self) -> str:
        return json.dumps({"scene_median_db": list(self.scene_median_db),
                           "pixel_db_percentiles": {f"{p:g}": db for p, db in self.pixel_db_percentiles}})


@dataclass(frozen=True)
class ModelContract:
    """What a model is and how to feed it, as declared in its ONNX metadata."""

    task: str
    classes: tuple[ClassInfo, ...]
    output_activation: str
    input_units: str
    norm_clip: tuple[float, float]
    norm_mean: float
    norm_std: float
    gsd_m: float
    tile_size: int
    tile_overlap: int
    water_threshold: float | None
    model_name: str
    trained_on: str
    norm_mode: str = NORM_FIXED
    input_distribution: InputDistribution | None = None
    water_threshold_relative: float | None = None  # for relative (8-bit) inputs; None: water_threshold
    training: str | None = None  # JSON object: how a model trained for an area was made (sarlulc:train)

    @classmethod
    def from_onnx(cls, path, expected_task: str | None = None) -> "ModelContract":
        """Read and validate the contract of the ONNX file at ``path``."""
        return cls.from_metadata(read_onnx_metadata(path), str(path), expected_task)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str,
                      expected_task: str | None = None) -> "ModelContract":
        """Validate a ``metadata_props`` mapping; ``source`` names the model in messages."""
        if "sarlulc_contract" not in metadata:
            raise ModelContractError(
                f"'{source}' is not a SAR LULC model: its ONNX metadata has no 'sarlulc_contract' key. "
                f"Choose a model exported for this plugin. {_SEE_CONTRACT}")
        missing = [key for key in _REQUIRED_KEYS if key not in metadata]
        if missing:
            raise ModelContractError(
                f"The model '{source}' lacks the metadata key '{missing[0]}'. {_SEE_CONTRACT}")
        parser = _Parser(metadata, source)
        if metadata["sarlulc_contract"].strip() != CONTRACT_VERSION:
            parser.fail("sarlulc_contract", f"this plugin reads contract version {CONTRACT_VERSION}")
        task = metadata["task"].strip().lower()
        if task not in TASKS:
            parser.fail("task", f"expected one of {', '.join(TASKS)}")
        if expected_task is not None and task != expected_task:
            raise ModelContractError(
                f"The model '{source}' is a {task} model, but this algorithm needs a {expected_task} model. "
                f"Choose a {expected_task} model, or run the {task} algorithm with it.")
        activation = metadata["output_activation"].strip().lower()
        if activation != ACTIVATION_OF_TASK[task]:
            parser.fail("output_activation", f"a {task} model must use {ACTIVATION_OF_TASK[task]}")
        units = metadata["input_units"].strip().lower()
        if units not in SUPPORTED_INPUT_UNITS:
            parser.fail("input_units", f"supported: {', '.join(SUPPORTED_INPUT_UNITS)}")
        classes = parser.classes(task)
        clip = parser.json_value("norm_clip")
        if (not isinstance(clip, list) or len(clip) != 2 or not all(_is_number(v) for v in clip)
                or not clip[0] < clip[1]):
            parser.fail("norm_clip", "expected [low, high] with low < high")
        norm_mode = metadata.get("norm_mode", NORM_FIXED).strip().lower()
        if norm_mode not in NORM_MODES:
            parser.fail("norm_mode", f"expected one of {', '.join(NORM_MODES)}")
        tile_size = parser.integer("tile_size", minimum=TILE_MULTIPLE)
        if tile_size % TILE_MULTIPLE:
            parser.fail("tile_size", f"must be a multiple of {TILE_MULTIPLE}")
        tile_overlap = parser.integer("tile_overlap", minimum=0)
        if 2 * tile_overlap >= tile_size:
            parser.fail("tile_overlap", "must be less than half the tile size")
        water_threshold = None
        if task == "water":
            if "water_threshold" not in metadata:
                raise ModelContractError(
                    f"The water model '{source}' lacks the metadata key 'water_threshold'. {_SEE_CONTRACT}")
            water_threshold = parser.number("water_threshold")
            if not 0.0 < water_threshold < 1.0:
                parser.fail("water_threshold", "must be between 0 and 1")
        water_threshold_relative = None
        if task == "water" and "water_threshold_relative" in metadata:
            water_threshold_relative = parser.number("water_threshold_relative")
            if not 0.0 < water_threshold_relative < 1.0:
                parser.fail("water_threshold_relative", "must be between 0 and 1")
        training = None
        if "training" in metadata:
            if not isinstance(parser.json_value("training"), dict):
                parser.fail("training", "expected a JSON object")
            training = metadata["training"]
        return cls(
            task=task, classes=classes, output_activation=activation, input_units=units,
            norm_clip=(float(clip[0]), float(clip[1])), norm_mean=parser.number("norm_mean"),
            norm_std=parser.number("norm_std", positive=True), gsd_m=parser.number("gsd_m", positive=True),
            tile_size=tile_size, tile_overlap=tile_overlap, water_threshold=water_threshold,
            model_name=metadata.get("model_name", "").strip() or pathlib.Path(source).stem,
            trained_on=metadata.get("trained_on", "").strip(), norm_mode=norm_mode,
            input_distribution=parser.input_distribution() if "input_distribution" in metadata else None,
            water_threshold_relative=water_threshold_relative, training=training)

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` mapping that :meth:`from_metadata` reads back into this contract."""
        metadata = {
            "sarlulc_contract": CONTRACT_VERSION,
            "task": self.task,
            "classes": json.dumps([{"code": c.code, "name": c.name, "color": c.color} for c in self.classes]),
            "output_activation": self.output_activation,
            "input_units": self.input_units,
            "norm_mode": self.norm_mode,
            "norm_clip": json.dumps([float(v) for v in self.norm_clip]),
            "norm_mean": repr(float(self.norm_mean)),
            "norm_std": repr(float(self.norm_std)),
            "gsd_m": repr(float(self.gsd_m)),
            "tile_size": str(int(self.tile_size)),
            "tile_overlap": str(int(self.tile_overlap)),
            "model_name": self.model_name,
            "trained_on": self.trained_on,
        }
        if self.water_threshold is not None:
            metadata["water_threshold"] = repr(float(self.water_threshold))
        if self.water_threshold_relative is not None:
            metadata["water_threshold_relative"] = repr(float(self.water_threshold_relative))
        if self.input_distribution is not None:
            metadata["input_distribution"] = self.input_distribution.to_json()
        if self.training is not None:
            metadata["training"] = self.training
        return metadata

    def provenance(self) -> dict[str, str]:
        """The GDAL metadata items an output raster of this model carries (PROVENANCE_KEYS)."""
        items = {PROVENANCE_MODEL: self.model_name, PROVENANCE_TASK: self.task}
        if self.trained_on:
            items[PROVENANCE_TRAINED_ON] = self.trained_on
        return items


def read_onnx_metadata(path) -> dict[str, str]:
    """The custom metadata of an ONNX file, read through ONNX Runtime (the one runtime dependency)."""
    from .session import CPU, load_session

    session = load_session(path, [CPU], optimise=False)
    return dict(session.get_modelmeta().custom_metadata_map)


def bundled_model_path(task: str) -> pathlib.Path:
    """Where the plugin's own model for ``task`` lives: model/weights/{lulc,water}.onnx."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; expected one of {TASKS}")
    return pathlib.Path(__file__).resolve().parents[2] / "model" / "weights" / f"{task}.onnx"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _Parser:
    """Typed reads of metadata values, each failing with a message naming the key."""

    def __init__(self, metadata: dict[str, str], source: str):
        self.metadata = metadata
        self.source = source

    def fail(self, key: str, why: str):
        raise ModelContractError(
            f"The model '{self.source}' has an invalid '{key}' metadata value "
            f"({self.metadata.get(key)!r}): {why}. {_SEE_CONTRACT}")

    def json_value(self, key: str):
        try:
            return json.loads(self.metadata[key])
        except ValueError:
            self.fail(key, "not valid JSON")

    def input_distribution(self) -> InputDistribution:
        try:
            return InputDistribution.from_json(self.metadata["input_distribution"])
        except ValueError as error:
            self.fail("input_distribution", str(error))

    def number(self, key: str, positive: bool = False) -> float:
        try:
            value = float(self.metadata[key])
        except ValueError:
            self.fail(key, "not a number")
        if not math.isfinite(value) or (positive and value <= 0):
            self.fail(key, "must be a positive number" if positive else "must be a finite number")
        return value

    def integer(self, key: str, minimum: int) -> int:
        try:
            value = int(self.metadata[key].strip())
        except ValueError:
            self.fail(key, "not an integer")
        if value < minimum:
            self.fail(key, f"must be at least {minimum}")
        return value

    def classes(self, task: str) -> tuple[ClassInfo, ...]:
        entries = self.json_value("classes")
        if not isinstance(entries, list) or not entries:
            self.fail("classes", "expected a non-empty JSON list of {code, name, color}")
        classes = []
        for entry in entries:
            if not (isinstance(entry, dict) and isinstance(entry.get("code"), int)
                    and isinstance(entry.get("name"), str) and entry["name"].strip()
                    and isinstance(entry.get("color"), str) and COLOR_PATTERN.match(entry["color"])):
                self.fail("classes", f"entry {entry!r} needs an integer code, a name and a '#rrggbb' color")
            if not 1 <= entry["code"] <= 254:
                self.fail("classes", f"code {entry['code']} is outside 1..254")
            classes.append(ClassInfo(entry["code"], entry["name"].strip(), entry["color"].lower()))
        if len({c.code for c in classes}) != len(classes):
            self.fail("classes", "codes must be unique")
        if task == "water" and len(classes) != 1:
            self.fail("classes", "a water model declares exactly one class, the water class")
        if task == "lulc" and len(classes) < 2:
            self.fail("classes", "a lulc model declares at least two classes")
        return tuple(classes)
