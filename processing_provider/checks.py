"""Checks of an algorithm's parameter values before any work, with messages a user can act on (QGIS's
own only say "Incorrect parameter value"): raster inputs, numbers and options, outputs that would
overwrite an input or another output, file names that do not fit their format, GeoPackages of several
tables."""

import math
import re
from pathlib import Path

from osgeo import gdal
from qgis.core import (
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
)

from ..sarlulc.errors import InferenceError
from ..sarlulc.rasters.reading import open_raster
from .compat import NUMBER_INTEGER


def parameter_problem(algorithm: QgsProcessingAlgorithm, parameters: dict, context, engine_check=None) -> str | None:
    """What is wrong with ``parameters``, in words a user can act on, or None (QGIS's own checks
    follow): a raster input that is missing, a folder or not a raster GDAL can read (the engine's
    message); a number parameter given text; then ``engine_check()``, which
    raises the engine's InferenceError; then a value outside a parameter's options or range."""
    given = [(definition, parameters.get(definition.name())) for definition in algorithm.parameterDefinitions()]
    given = [(definition, value) for definition, value in given if value is not None and value != ""]
    for definition, value in given:
        label = parameter_label(definition)
        if isinstance(definition, QgsProcessingParameterRasterLayer) and isinstance(value, str) and \
                QgsProcessingUtils.mapLayerFromString(value, context, False) is None:
            try:
                open_raster(value, getattr(algorithm, "RASTER_ROLES", {}).get(definition.name(), "input raster"))
            except InferenceError as error:
                return f"{label}: {error}"
        if isinstance(definition, QgsProcessingParameterNumber) and isinstance(value, str) and value.strip():
            try:
                float(value)
            except ValueError:
                return f"{label}: '{value}' is not a number."
    if engine_check is not None:
        try:
            engine_check()
        except InferenceError as error:
            return str(error)
    for definition, value in given:
        if isinstance(value, (str, int, float)) and not definition.checkValueIsAcceptable(value):
            label = parameter_label(definition)
            if isinstance(definition, QgsProcessingParameterEnum):
                return f"{label}: '{value}' is not one of its options: {', '.join(definition.options())}."
            if isinstance(definition, QgsProcessingParameterNumber):
                return out_of_range(label, value, definition)
    return None


_OGR_DESTINATION = re.compile(r"^ogr:dbname='(?P<path>[^']*)'(?:\s+table=\"(?P<table>[^\"]*)\")?")


def destination_file(destination: str) -> tuple[Path | None, str | None]:
    """(file, layer name) a sink destination writes to: a plain path, or ``ogr:dbname='...' table="..."``;
    (None, None) for temporary, memory and database destinations."""
    match = _OGR_DESTINATION.match(destination or "")
    if match:
        return Path(match.group("path")), match.group("table")
    if not destination or destination == QgsProcessing.TEMPORARY_OUTPUT or \
            destination.startswith(("memory:", "postgres:", "spatialite:")) or "://" in destination:
        return None, None
    return Path(destination.split("|")[0]), None


def destination_of(value) -> tuple[Path | None, str | None]:
    """`destination_file` of a destination parameter's value (a path, or an output definition)."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.staticValue()
    return destination_file(value) if isinstance(value, str) else (None, None)


def _input_files(value, context) -> list[str]:
    """The files an input parameter value reads: a layer (by id, name or source), a feature source
    definition, a file path, or a list of them."""
    if isinstance(value, QgsProcessingFeatureSourceDefinition):
        value = value.source.staticValue()
    if isinstance(value, (list, tuple)):
        return [path for item in value for path in _input_files(item, context)]
    if isinstance(value, QgsMapLayer):
        return [value.source().split("|")[0]]
    if not isinstance(value, str) or not value.strip():
        return []
    layer = QgsProcessingUtils.mapLayerFromString(value, context, False)
    return [(layer.source() if layer is not None else value).split("|")[0]]


def file_extension_problem(algorithm: QgsProcessingAlgorithm, parameters: dict, context) -> str | None:
    """Why a file output's name does not fit the one format the algorithm writes into it (a PDF named .png, a
    zipped project named .qgs), or None."""
    for definition in algorithm.destinationParameterDefinitions():
        if not isinstance(definition, QgsProcessingParameterFileDestination):
            continue
        path, _ = destination_of(parameters.get(definition.name()))
        extensions = re.findall(r"\*\.(\w+)", definition.fileFilter())
        if path is None or not extensions or path.suffix.lower().lstrip(".") in extensions:
            continue
        wanted = " or ".join(f".{extension}" for extension in extensions)
        return (f"The output {parameter_label(definition)} file '{path}' must end in {wanted}: "
                f"that is the format written into it ({definition.fileFilter()}). Change the file name.")
    return None


def geopackage_tables(path: Path) -> list[str]:
    """The user tables (raster and vector) of an existing GeoPackage; [] when it cannot be read."""
    try:
        dataset = gdal.OpenEx(str(path), gdal.OF_VECTOR | gdal.OF_RASTER)
    except RuntimeError:
        return []
    if dataset is None:
        return []
    names = [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())]
    names += [value.split(":")[-1] for key, value in (dataset.GetMetadata("SUBDATASETS") or {}).items()
              if key.endswith("_NAME")]
    return [name for name in names if name != "layer_styles"]


def geopackage_problem(algorithm: QgsProcessingAlgorithm, parameters: dict) -> str | None:
    """Refuse writing a whole-file output over an existing GeoPackage that holds several tables (a project's
    data): the file would be replaced with all of them. A single table (an earlier result) may be replaced;
    a layer destination (ogr:dbname=... table=...) adds a table; outputs an algorithm rebuilds itself
    (``GEOPACKAGE_OUTPUTS_REBUILT``, e.g. the field package, which keeps its observations) are its own."""
    for definition in algorithm.destinationParameterDefinitions():
        path, table = destination_of(parameters.get(definition.name()))
        if (path is None or table or path.suffix.lower() != ".gpkg" or not path.is_file()
                or definition.name() in getattr(algorithm, "GEOPACKAGE_OUTPUTS_REBUILT", ())):
            continue
        tables = geopackage_tables(path)
        if len(tables) > 1:
            return (f"The output {parameter_label(definition)} file '{path}' is a GeoPackage "
                    f"holding {len(tables)} tables ({', '.join(sorted(tables)[:5])}): writing there would replace the "
                    f"whole file and lose them. Choose another file"
                    + (f", or add a table to it: ogr:dbname='{path}' table=\"name\"."
                       if definition.type() in ("sink", "vectorDestination") else "."))
    return None


def run_files(algorithm: QgsProcessingAlgorithm, parameters: dict, context) -> tuple[dict, dict]:
    """({label: file} the run reads, {label: file} it writes), from every parameter of ``algorithm``:
    layers, feature sources and files in; every destination (rasters, vectors, files, folders) out.
    Labels name the parameter as the dialog shows it."""
    inputs, outputs = {}, {}
    for definition in algorithm.parameterDefinitions():
        value = parameters.get(definition.name())
        if value is None or value == "":
            continue
        label = parameter_label(definition)
        if definition.isDestination():
            path, _ = destination_of(value)
            if path is not None:
                outputs[f"output {label}"] = str(path)
        else:
            for index, path in enumerate(_input_files(value, context)):
                inputs[f"input {label}" + (f" #{index + 1}" if index else "")] = path
    return inputs, outputs


def unacceptable_value_problem(algorithm: QgsProcessingAlgorithm, parameters: dict, context) -> str | None:
    """What QGIS would only call an "Incorrect parameter value", said so a user can fix it: a required value
    left empty, a number out of range, a layer or file that does not exist or does not open."""
    for definition in algorithm.parameterDefinitions():
        value = parameters.get(definition.name())
        if definition.isDestination() or definition.checkValueIsAcceptable(value, context):
            continue
        label = parameter_label(definition)
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"{label} is required: give a value."
        if isinstance(definition, QgsProcessingParameterNumber):
            return out_of_range(label, value, definition)
        if isinstance(value, str):
            path = value.split("|")[0]
            if definition.type() in ("layer", "raster", "vector", "source", "file") and not Path(path).exists():
                return (f"{label}: '{value}' is neither a layer of the project nor a file that exists. Check the "
                        f"path, or choose a layer.")
            return f"{label}: '{value}' cannot be opened as a {definition.type()} input. Check that it is one."
    return None


def parameter_label(definition) -> str:
    """A parameter as messages name it: its label in the dialog and its name ("Band (BAND)")."""
    return f"{definition.description()} ({definition.name()})"


def out_of_range(label: str, value, definition: QgsProcessingParameterNumber) -> str:
    """The message for a number parameter given a value outside its range."""
    return f"{label}: {value} is out of range; {_number_range(definition)}."


def _number_range(definition: QgsProcessingParameterNumber) -> str:
    """The values a number parameter accepts, as a phrase ("use 3 to 31")."""
    integer = definition.dataType() == NUMBER_INTEGER

    def show(number):
        return str(int(number)) if integer or float(number).is_integer() else f"{number:g}"

    low, high = definition.minimum(), definition.maximum()
    bounded_low, bounded_high = math.isfinite(low) and low > -1e300, math.isfinite(high) and high < 1e300
    if bounded_low and bounded_high:
        return f"use {show(low)} to {show(high)}"
    if bounded_low:
        return f"use {show(low)} or more"
    if bounded_high:
        return f"use at most {show(high)}"
    return "use a finite number"
