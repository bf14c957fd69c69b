"""The inference engine's entry points: `segment` (land cover) and `detect_water`.

A run (run.py) validates everything, then streams the raster block by block through the model.
Parts: TilePlan (which tiles, which blocks), BackscatterReader + prepare_input (model input in dB,
speckle filtered on request), ModelSession (ONNX Runtime), BlockAccumulator (blending),
OutputRaster (GeoTIFF writing). Inputs at another pixel size than the model's, in degrees or
rotated are read through a warped view on the model's grid and the results warped back.
Memory is bounded by the block size, whatever the raster size.

Before a model runs, check_input_distribution warns when the input is unlike its training data.
Water detection may instead threshold the same dB input (METHOD threshold, threshold.py): one
threshold found for the whole raster, then applied block by block.
"""

from __future__ import annotations

from ..errors import gdal_exceptions
from .memory import bounded_gdal_cache
from .options import OUTPUT_GRIDS, WATER_METHODS, RunOptions, check_options
from .output_specs import StyleWriter
from .progress import format_duration
from ..rasters.reading import reading
from .run import Run, RunReport
from .settings import DEFAULT_BATCH_SIZE, DEFAULT_BLOCK_SIZE, GPU_BLOCK_SIZE
from .tasks import LAND_COVER, WATER

__all__ = ["segment", "detect_water", "RunOptions", "RunReport", "check_options", "format_duration", "StyleWriter",
           "OUTPUT_GRIDS", "WATER_METHODS", "DEFAULT_BATCH_SIZE", "DEFAULT_BLOCK_SIZE", "GPU_BLOCK_SIZE"]


def segment(input_path, output_path, model_path=None, confidence_path=None, options=None,
            progress=None, is_cancelled=None, log=None, style: StyleWriter | None = None, warn=None) -> RunReport:
    """LULC class raster (uint8 codes, nodata 0) and optional confidence (max probability, nodata -1);
    with ``style``, each gets a .qml style file committed with it. ``log`` gets the information
    lines, ``warn`` the warnings (default: ``log`` with "Warning: ")."""
    with gdal_exceptions(), reading(input_path), bounded_gdal_cache():
        return Run(LAND_COVER, input_path, output_path, model_path, confidence_path, options or RunOptions(),
                   progress, is_cancelled, log, style, warn).execute()


def detect_water(input_path, output_path, model_path=None, probability_path=None, options=None,
                 progress=None, is_cancelled=None, log=None, style: StyleWriter | None = None,
                 warn=None) -> RunReport:
    """Water mask (uint8 1 water / 0 not, nodata 255) and optional water probability (nodata -1);
    with ``style``, each gets a .qml style file committed with it.

    With ``options.method`` = "threshold" no model runs: the mask thresholds the backscatter at a
    level found automatically for the whole raster, and there is no probability. The model given
    (or the bundled one) then only sets the working grid (its pixel size) and the legend."""
    with gdal_exceptions(), reading(input_path), bounded_gdal_cache():
        return Run(WATER, input_path, output_path, model_path, probability_path, options or RunOptions(),
                   progress, is_cancelled, log, style, warn).execute()
