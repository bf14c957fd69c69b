"""Bringing results made on the model grid back to the input's grid (OUTPUT_GRID input)."""

from __future__ import annotations

import math

import numpy as np
from osgeo import gdal

from ..rasters.coverage import DataCoverage
from ..errors import CancelledError
from .output_specs import OutputSpec
from ..rasters.reading import BackscatterReader
from ..rasters.resample import ground_pixel_size_m
from .streaming import blocks_of
from ..rasters.windows import Window
from ..rasters.writer import OutputRaster, discarded_on_error


def warp_back(specs: list[OutputSpec], model_grid_outputs: list[OutputRaster], dataset: gdal.Dataset,
              input_reader: BackscatterReader, coverage: DataCoverage, gsd_m: float, block_size: int, progress,
              is_cancelled) -> tuple[list[OutputRaster], int]:
    """Warp the model-grid results onto the input grid into the final files, then make every input
    nodata pixel nodata there (interpolation may have spread values into it); returns (the final
    outputs, still to commit; the valid pixels). Blocks without valid input are filled with nodata
    unread, and left as the warp wrote them (nodata) when no valid input lies within two model pixels
    either."""
    reach = 2 * math.ceil(gsd_m / min(ground_pixel_size_m(dataset))) + 2
    finals: list[OutputRaster] = []
    with discarded_on_error(finals):
        for index, (spec, source) in enumerate(zip(specs, model_grid_outputs)):
            share = 80.0 / len(specs)
            final = OutputRaster.warped(source.temp_path, spec.path, dataset, spec.resampling,
                                        lambda percent, start=index * share: progress(start + percent * share / 100),
                                        is_cancelled)
            finals.append(final)
            spec.describe(final)
        blocks = blocks_of(dataset.RasterXSize, dataset.RasterYSize, block_size)
        valid_pixels = 0
        for done, block in enumerate(blocks, start=1):
            if is_cancelled():
                raise CancelledError()
            near = Window(block.x - reach, block.y - reach, block.width + 2 * reach, block.height + 2 * reach)
            if coverage.has_data(block):
                main = finals[0].read(block)
                valid = input_reader.read_valid(block) & (main != specs[0].nodata)
                finals[0].write(np.where(valid, main, specs[0].nodata).astype(main.dtype), block)
                for spec, final in zip(specs[1:], finals[1:]):
                    scores = final.read(block)
                    final.write(np.where(valid, scores, spec.nodata).astype(scores.dtype), block)
                valid_pixels += int(valid.sum())
            elif coverage.has_data(near):
                for spec, final in zip(specs, finals):
                    final.fill(spec.nodata, block)
            progress(80.0 + 20.0 * done / len(blocks))
    return finals, valid_pixels
