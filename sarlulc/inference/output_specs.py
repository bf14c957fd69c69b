"""What each output raster of a run is (`OutputSpec`), the room the outputs need, their creation, and
the style files committed with them."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Callable

from osgeo import gdal

from .contract import ModelContract
from ..rasters.output_checks import style_sidecar_path
from ..rasters.transaction import PendingFiles
from ..rasters.writer import OutputRaster, raster_bytes

# style(raster_path, style_path, final_path, contract, main): writes the .qml of a finished output
# (``raster_path``, under its hidden name; ``final_path`` once committed) to ``style_path``.
StyleWriter = Callable[[pathlib.Path, pathlib.Path, pathlib.Path, ModelContract, bool], None]


@dataclass
class OutputSpec:
    """What one output raster is: its file, type, nodata, band description, legend, the model that made
    it, and how it is warped back to the input grid (nearest for classes, bilinear for scores)."""

    path: pathlib.Path
    data_type: int
    nodata: float
    description: str
    legend: list[tuple[int, str, str]] | None
    resampling: str
    provenance: dict[str, str]

    def create(self, path, like: gdal.Dataset) -> OutputRaster:
        output = OutputRaster(path, like, self.data_type, self.nodata, self.description)
        self.describe(output)
        return output

    def describe(self, output: OutputRaster) -> None:
        """Legend and provenance (GDAL metadata items naming the model, read back by the field maps)."""
        if self.legend:
            output.set_legend(self.legend)
        output.dataset.SetMetadata(self.provenance)


def space_needed(specs: list[OutputSpec], dataset: gdal.Dataset, model_input: gdal.Dataset,
                 warp_back: bool) -> list[tuple[pathlib.Path, int]]:
    """(path, bytes) the outputs need while written: on the grid the model read (``model_input``), or
    on the input's grid plus the model-grid copies beside the main output when they are warped back."""
    model_pixels = model_input.RasterXSize * model_input.RasterYSize
    final_pixels = dataset.RasterXSize * dataset.RasterYSize if warp_back else model_pixels
    needs = [(spec.path, raster_bytes(spec.path, final_pixels, spec.data_type)) for spec in specs]
    if warp_back:
        needs += [(specs[0].path, raster_bytes("model-grid.tif", model_pixels, spec.data_type)) for spec in specs]
    return needs


def style_files(style: StyleWriter | None, specs: list[OutputSpec], contract: ModelContract):
    """The commit step that writes each output's .qml beside it (None without ``style``)."""
    if style is None:
        return None

    def add_styles(pending: PendingFiles, rasters: list[pathlib.Path]) -> None:
        for index, (spec, raster) in enumerate(zip(specs, rasters)):
            style(raster, pending.new(style_sidecar_path(spec.path)), spec.path, contract, index == 0)
    return add_styles


def create_outputs(specs: list[OutputSpec], paths, like: gdal.Dataset) -> list[OutputRaster]:
    outputs = []
    try:
        for spec, path in zip(specs, paths):
            outputs.append(spec.create(path, like))
    except BaseException:
        for output in outputs:
            output.discard()
        raise
    return outputs
