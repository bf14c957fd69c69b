"""Errors raised by the inference core; ``str(error)`` is shown to the user as is."""


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


class ClassRasterError(InputRasterError):
    """The raster is not a class raster (integer class codes) or carries no legend where one is needed."""
