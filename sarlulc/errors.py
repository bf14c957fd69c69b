"""Errors raised by the inference core (``str(error)`` is shown to the user as is), and the scope in
which GDAL raises them."""

import contextlib
import threading

from osgeo import gdal, ogr


class InferenceError(Exception):
    """Base; str(e) is a user-facing message: what is wrong and how to fix it."""


class InputRasterError(InferenceError):
    """The input raster cannot be used: unreadable, band out of range, no CRS, no valid pixel."""


class ModelContractError(InferenceError):
    """The ONNX model cannot be used: unreadable, foreign (no SAR LULC metadata), invalid key, wrong task."""


class OutputError(InferenceError):
    """An output path cannot be written: same as the input, folder missing or read-only."""


class OptionError(InferenceError):
    """A run option is invalid: tile size, overlap, batch size, threshold, device."""


class CancelledError(InferenceError):
    """The user cancelled the run; every partial output file has been removed."""

    def __init__(self, message: str = "Cancelled by the user; no output was written."):
        super().__init__(message)


class ClassRasterError(InputRasterError):
    """The raster is not a class raster (integer class codes) or carries no legend where one is needed."""


class gdal_exceptions(contextlib.ContextDecorator):  # noqa: N801 (used as a decorator, named like one)
    """GDAL and OGR raise Python exceptions inside this scope (the core's code relies on it) and are
    left as they were outside it: turning them on for the whole process at import would change
    GDAL's behaviour for every other plugin in the same QGIS. Nested and concurrent scopes (two
    runs in two threads) share one count: the last to leave puts back what it found. GDAL's switch
    is process-wide: while a run is in progress, other code sees exceptions too."""

    _lock = threading.Lock()
    _depth = 0
    _found: tuple[bool, bool] = (False, False)

    def __enter__(self):
        with gdal_exceptions._lock:
            if gdal_exceptions._depth == 0:
                gdal_exceptions._found = (bool(gdal.GetUseExceptions()), bool(ogr.GetUseExceptions()))
                gdal.UseExceptions()
                ogr.UseExceptions()
            gdal_exceptions._depth += 1
        return self

    def __exit__(self, *exc):
        with gdal_exceptions._lock:
            gdal_exceptions._depth -= 1
            if gdal_exceptions._depth == 0:
                gdal_was, ogr_was = gdal_exceptions._found
                # GDAL 3.6 takes its error handlers off in the reverse order; if other code turned them
                # on meanwhile, they stay on (better than an error on the way out of a run).
                with contextlib.suppress(RuntimeError):
                    if not ogr_was:
                        ogr.DontUseExceptions()
                    if not gdal_was:
                        gdal.DontUseExceptions()
        return False
