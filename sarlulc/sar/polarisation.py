"""Which polarisation a SAR band holds, as far as the raster says: its band description or metadata, its
dataset metadata, or else its file name (JAXA mosaic tiles and ALOS-2 scenes carry it only there:
N35E139_21_sl_HV_F02DAR.tif, IMG-HV-ALOS2...; Sentinel-1 measurement files too: s1a-iw-grd-vh-...).
Cross-polarised backscatter (HV, VH) lies 6-10 dB below co-polarised (HH, VV) over land, so a water level
or a model made for one is wrong for the other. GDAL only."""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from osgeo import gdal

POLARISATIONS = ("HH", "HV", "VH", "VV")
CROSS = ("HV", "VH")


class BandPolarisation(NamedTuple):
    """The polarisation a band names (None: none named, or several) and where it was read."""

    name: str | None
    source: str = ""

    @property
    def cross(self) -> bool:
        return self.name in CROSS


def band_polarisation(dataset: gdal.Dataset, band: int) -> BandPolarisation:
    """The one polarisation the band's own texts name, else the dataset's metadata, else its file name;
    a text naming several (an HH/HV stack's file name) decides nothing."""
    raster_band = dataset.GetRasterBand(band)
    sources = (("its description", [raster_band.GetDescription()] + _metadata_texts(raster_band)),
               ("the raster's metadata", _metadata_texts(dataset)),
               ("the file name", [os.path.basename(dataset.GetDescription())]))
    for source, texts in sources:
        named = _named(texts)
        if named:
            return BandPolarisation(named[0] if len(named) == 1 else None, source)
    return BandPolarisation(None)


def _metadata_texts(owner) -> list[str]:
    return [f"{key} {value}" for key, value in (owner.GetMetadata() or {}).items()]


def _named(texts: list[str]) -> list[str]:
    """The polarisations named as words (HH in "sl_HH_F02DAR", not in "PATHHOLE")."""
    words = set(re.findall(r"[A-Z]+", " ".join(texts).upper().replace("_", " ")))
    return sorted(words & set(POLARISATIONS))
