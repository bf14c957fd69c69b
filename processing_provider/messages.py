"""Messages and errors the algorithms share: the core's errors turned into Processing's, and the wording of a
cancelled run."""

import contextlib

from qgis.core import QgsProcessingException

from ..sarlulc.errors import CancelledError, InferenceError


@contextlib.contextmanager
def engine_errors():
    """The engine's user-facing errors as QgsProcessingException (shown in the dialog, no traceback)."""
    try:
        yield
    except InferenceError as error:
        raise QgsProcessingException(str(error)) from error


def cancelled(outcome: str) -> QgsProcessingException:
    """A run the user cancelled, worded as the engine's CancelledError ("Cancelled by the user; no output was
    written."), with ``outcome`` saying what became of this algorithm's outputs."""
    cause, _, _ = str(CancelledError()).partition(";")
    return QgsProcessingException(f"{cause}; {outcome}.")
