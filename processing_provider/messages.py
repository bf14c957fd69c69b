"""The core's errors turned into Processing's."""

import contextlib

from qgis.core import QgsProcessingException

from ..model.inference.errors import InferenceError


@contextlib.contextmanager
def engine_errors():
    """The engine's user-facing errors as QgsProcessingException (shown in the dialog, no traceback)."""
    try:
        yield
    except InferenceError as error:
        raise QgsProcessingException(str(error)) from error
