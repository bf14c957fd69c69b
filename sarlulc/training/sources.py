"""Where training data comes from: scene pairs found in folders, single rasters and list files, and the
data profiles that say how to read each published data set in place.

Naming: a scene is ``<name>_sar.tif`` (one band: sigma0 in dB, linear power or ALOS-2 DN, units
detected as the plugin does, from a decimated read of the whole raster, unless given) next to ``<name>_label.tif``
(uint8 class codes of sarlulc/products.py, 0 = nodata). Sources are folders (all ``*_sar.tif`` with
their label), single rasters, or list files (one SAR path per line, optionally followed by its
label path; relative paths are relative to the list file).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import NamedTuple

from osgeo import gdal

from ..products import WATER_CLASSES
from ..sar.units import InputUnits


SAR_SUFFIX = "_sar.tif"

LABEL_SUFFIX = "_label.tif"

NODATA_CODE = 0

WATER_CODE = WATER_CLASSES[0][0]

NOT_WATER_CODE = 255  # "valid, not water, land-cover class unknown" in water-only labels


@dataclass(frozen=True)
class DataProfile:
    """How to read one published data set as SAR LULC training pairs, without converting the files.

    ``units``: the SAR band's units (None: detected); ``sar_invalid``: further SAR values that are not
    measurements; ``label_map``: raw label value -> class code (unlisted values are nodata);
    ``water_only``: the labels only say water / not water (NOT_WATER_CODE), usable by the water task only.
    """

    units: InputUnits | None = None
    sar_invalid: tuple[float, ...] = ()
    label_map: dict[int, int] | None = None
    water_only: bool = False
    # labels were published per chip of this many px: training screens them chip by chip (see screen_water_chips)
    label_chip: int | None = None


PROFILES = {
    "sarlulc": DataProfile(),
    # ETCI 2021 flood chips (../shared/data/etci2021): 8-bit stretched Sentinel-1 VV brightness, 0 = no chip,
    # 255 = saturated white chips (no information); labels 0 not water, 1 flood, 2 permanent water, 255 nodata.
    # The stretch is not published: read as relative brightness, as the plugin reads any 8-bit input (the
    # fitted nominal stretch, then the scene's land level anchored; units.RELATIVE_STRETCH_DB).
    "etci2021": DataProfile(units=InputUnits.RELATIVE, sar_invalid=(255.0,),
                            label_map={0: NOT_WATER_CODE, 1: WATER_CLASSES[0][0], 2: WATER_CLASSES[0][0]},
                            water_only=True, label_chip=256),
    # Sen1Floods11 hand-labelled chips (../shared/data/sen1floods11): calibrated Sentinel-1 sigma0 dB, band 1 VV,
    # NaN nodata, EPSG:4326; labels -1 nodata, 0 not water, 1 water.
    "sen1floods11": DataProfile(units=InputUnits.DB, label_map={0: NOT_WATER_CODE, 1: WATER_CLASSES[0][0]},
                                water_only=True),
    # AIRSAR L-band San Francisco (../shared/data/sf_airsar): band 1 HH dB as distributed; labels 1 bare soil
    # (beach), 2 mountain (scrub and grass of the Marin Headlands), 3 water, 4 urban, 5 vegetation (parks,
    # mostly trees). The labels do not name the vegetated classes: hills -> Grassland, parks -> Broadleaf
    # forest, scored as one vegetation group (tools/evaluate_set.py --groups).
    "sf_airsar": DataProfile(units=InputUnits.DB, label_map={1: 8, 2: 5, 3: 1, 4: 2, 5: 6}),
}


class Scene(NamedTuple):
    """One training raster: its SAR file, its label file (None for pretraining) and its data profile."""

    sar: pathlib.Path
    label: pathlib.Path | None
    profile: str = "sarlulc"


def _is_raster(path: pathlib.Path) -> bool:
    return gdal.IdentifyDriverEx(str(path), gdal.OF_RASTER) is not None


def _list_file_entries(list_file: pathlib.Path) -> list[tuple[list[pathlib.Path], str]]:
    """(paths, profile) per line of 'SAR_PATH [LABEL_PATH] [profile=NAME]'."""
    try:
        text = list_file.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"'{list_file}' is neither a raster GDAL can read nor a text list file "
                         f"('SAR_PATH [LABEL_PATH] [profile=NAME]' per line).") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        options = dict(part.split("=", 1) for part in parts if "=" in part)
        paths = [part for part in parts if "=" not in part]
        if len(paths) > 2 or set(options) - {"profile"}:
            raise ValueError(f"{list_file}:{number}: expected 'SAR_PATH [LABEL_PATH] [profile=NAME]', got {line!r}")
        profile = options.get("profile", "sarlulc")
        if profile not in PROFILES:
            raise ValueError(f"{list_file}:{number}: unknown profile '{profile}'; known: {', '.join(PROFILES)}")
        entries.append(([p if p.is_absolute() else list_file.parent / p for p in map(pathlib.Path, paths)], profile))
    return entries


def _source_entries(source: pathlib.Path, folder_glob, kind: str) -> list[tuple[list[pathlib.Path], str]]:
    """(paths, profile) entries of a folder, a single raster or a list file."""
    if source.is_dir():
        return [([path], "sarlulc") for path in folder_glob(source)]
    if source.is_file():
        return [([source], "sarlulc")] if _is_raster(source) else _list_file_entries(source)
    raise FileNotFoundError(f"{kind} source '{source}' is neither a folder, a raster nor a list file.")


def find_pairs(sources) -> list[Scene]:
    """Labelled scenes from folders, ``<name>_sar.tif`` rasters and list files; every SAR file must have its label."""
    pairs = []
    for source in map(pathlib.Path, sources):
        entries = _source_entries(source, lambda folder: sorted(folder.glob(f"*{SAR_SUFFIX}")), "Training")
        if not entries:
            raise FileNotFoundError(f"No '*{SAR_SUFFIX}' file in '{source}'. Name scenes <name>{SAR_SUFFIX} "
                                    f"with labels <name>{LABEL_SUFFIX}.")
        for paths, profile in entries:
            sar = paths[0]
            label = paths[1] if len(paths) == 2 else _label_path(sar)
            for path in (sar, label):
                if not path.is_file():
                    raise FileNotFoundError(f"Missing file '{path}' (listed or expected from '{source}'). "
                                            f"Each <name>{SAR_SUFFIX} needs a <name>{LABEL_SUFFIX}.")
            pairs.append(Scene(sar, label, profile))
    return pairs


def _label_path(sar: pathlib.Path) -> pathlib.Path:
    if not sar.name.endswith(SAR_SUFFIX):
        raise ValueError(f"'{sar}' does not end in '{SAR_SUFFIX}', so its label cannot be found by name; list it "
                         f"as 'SAR_PATH LABEL_PATH' in a list file.")
    return sar.with_name(sar.name[:-len(SAR_SUFFIX)] + LABEL_SUFFIX)


def find_images(sources) -> list[Scene]:
    """Unlabelled SAR GeoTIFFs for pretraining: folders (``*.tif`` except labels), rasters or list files."""
    images = []
    for source in map(pathlib.Path, sources):
        entries = _source_entries(
            source, lambda folder: [p for p in sorted(folder.glob("*.tif")) if not p.name.endswith(LABEL_SUFFIX)],
            "Pretraining")
        if not entries:
            raise FileNotFoundError(f"No SAR GeoTIFF (*.tif) in '{source}'.")
        images += [Scene(paths[0], None, profile) for paths, profile in entries]
    return images
