"""The classes a model trained for an area learns: a class table's (CSV code,name,color), else the category
names and colours of the reference rasters, else the starting model's (the bundled 9). Other classes than
the starting model's keep its encoder and decoder and give it a new classification head, one output channel
per class; reference codes become channels 1..N in the classes' order."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from ..products import LULC_CLASSES, NOT_WATER, WATER_CLASSES
from ..inference.contract import ClassInfo
from .area_request import TrainingRefused, TrainRequest
from .class_table import ClassTableError, raster_classes, read_class_table
from .reference import is_vector, split_source
from ..networks.segmentor import Segmentor

LEGEND_CLASSES = tuple(ClassInfo(code, name, color) for code, name, color in LULC_CLASSES)


def same_classes(a: tuple[ClassInfo, ...], b: tuple[ClassInfo, ...]) -> bool:
    """Same codes and names in the same order: the same output channels (colours aside)."""
    return [(c.code, c.name.lower()) for c in a] == [(c.code, c.name.lower()) for c in b]


def given_classes(request: TrainRequest, log) -> tuple[ClassInfo, ...] | None:
    """The land-cover classes the user gives: the class table's, else the category names (and colours)
    the reference rasters carry when no remap table renumbers them; None: the starting model's."""
    if request.task == "water":
        return None
    if request.classes:
        try:
            classes = read_class_table(request.classes)
        except ClassTableError as error:
            raise TrainingRefused(str(error)) from None
        source = f"the class table {pathlib.Path(request.classes).name}"
    elif request.remap:
        return None
    else:
        classes = _reference_raster_classes(request)
        if not classes:
            return None
        source = "the class names of the reference raster(s)"
    if len(classes) < 2:
        raise TrainingRefused(f"{source[0].upper()}{source[1:]}: {len(classes)} class only; a land-cover model "
                              f"needs at least two.")
    log(f"classes from {source}: " + ", ".join(f"{c.code} {c.name}" for c in classes))
    return classes


def _reference_raster_classes(request: TrainRequest) -> tuple[ClassInfo, ...]:
    found: dict[int, ClassInfo] = {}
    for reference in dict.fromkeys(request.references):
        if is_vector(reference):
            continue
        try:
            categories = raster_classes(split_source(reference)[0]) or ()
        except ClassTableError as error:
            raise TrainingRefused(f"{error} Give a class table instead.") from None
        except RuntimeError:  # unreadable: reference_on_grid says so
            continue
        for item in categories:
            if item.code in found and found[item.code].name.lower() != item.name.lower():
                raise TrainingRefused(f"The references name class {item.code} '{found[item.code].name}' and "
                                      f"'{item.name}': give a class table.")
            found.setdefault(item.code, item)
    return tuple(found[code] for code in sorted(found))


def with_classes(model: Segmentor, count: int) -> tuple[Segmentor, list[str]]:
    """The network with ``count`` output channels: every tensor of the same shape kept (encoder,
    decoder, the head's refinement), the others (the classifier) from random weights; returns the
    new network and the layers that start afresh."""
    fresh = Segmentor(dataclasses.replace(model.config, num_classes=count))
    kept, state = model.state_dict(), fresh.state_dict()
    renewed = [name for name, value in state.items() if name not in kept or kept[name].shape != value.shape]
    state.update({name: value for name, value in kept.items() if name in state and name not in renewed})
    fresh.load_state_dict(state)
    return fresh, sorted({name.rsplit(".", 1)[0] for name in renewed})


def training_legend(task: str, classes: tuple[ClassInfo, ...]) -> tuple[tuple[int, str, str], ...]:
    """(code, name, colour) per training channel, for the scores and the report."""
    if task == "water":
        return (NOT_WATER, WATER_CLASSES[0])
    return tuple((c.code, c.name, c.color) for c in classes)


def channel_codes(classes: tuple[ClassInfo, ...]) -> np.ndarray:
    """Lookup table: a reference code -> its land-cover label code 1..N, one per output channel in the
    classes' order (0 elsewhere)."""
    table = np.zeros(256, np.uint8)
    for channel, item in enumerate(classes):
        table[item.code] = channel + 1
    return table
