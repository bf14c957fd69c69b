"""The one base of every SAR LULC algorithm (as QGIS's GdalAlgorithm is of the GDAL ones).

A subclass names what differs: its id, toolbox group, parameters, help and the core function it
calls. The base gives them all the plugin's icon and help page, enum options taken as text or
index, the checks of parameter values before any work (checks.py), raster inputs read by GDAL
from their file, and GDAL's exceptions while QGIS runs them.
"""

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterEnum,
)
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QIcon

from ..dependencies import PLUGIN_DIR
from ..sarlulc.errors import InferenceError, gdal_exceptions
from ..sarlulc.rasters.output_checks import check_distinct_files
from .checks import file_extension_problem, geopackage_problem, run_files, unacceptable_value_problem
from .compat import NUMBER_INTEGER, PARAMETER_ADVANCED

ICON_PATH = PLUGIN_DIR / "ui" / "icon.svg"


class PluginAlgorithm(QgsProcessingAlgorithm):
    """What every SAR LULC algorithm shares; a subclass sets ``GROUP`` and writes name, displayName,
    shortHelpString, initAlgorithm and processAlgorithm (mixins add what a few algorithms share)."""

    # The toolbox group the algorithm is listed in (its id: the same in lower case, without spaces).
    GROUP = ""

    # What QGIS calls on an algorithm and the core does inside: GDAL raises exceptions there, as the
    # core expects, and nowhere else in the QGIS process.
    GDAL_SCOPED_METHODS = ("checkParameterValues", "prepareAlgorithm", "processAlgorithm", "postProcessAlgorithm")

    def __init_subclass__(cls, **kwargs):
        """Scope GDAL's exceptions to each of those methods the class has in Python: its own, a mixin's or this
        base's (QGIS's C++ ones are left alone), wrapped once."""
        super().__init_subclass__(**kwargs)
        for name in cls.GDAL_SCOPED_METHODS:
            method = getattr(cls, name)
            if callable(method) and hasattr(method, "__code__") and not getattr(method, "gdal_scoped", False):
                scoped = gdal_exceptions()(method)
                scoped.gdal_scoped = True
                setattr(cls, name, scoped)

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def group(self):
        return self.GROUP

    def groupId(self):  # noqa: N802 (QGIS API)
        return self.GROUP.lower().replace(" ", "")

    def icon(self):
        return QIcon(str(ICON_PATH))

    def helpUrl(self):  # noqa: N802 (QGIS API)
        """The Help button's page: this algorithm's help rendered with its parameters (the README when the
        page cannot be written)."""
        from .help_page import help_page

        try:
            return QUrl.fromLocalFile(str(help_page(self))).toString()
        except OSError:
            return QUrl.fromLocalFile(str(PLUGIN_DIR / "README.md")).toString()

    @staticmethod
    def choice(name, description, options) -> QgsProcessingParameterEnum:
        """An enum whose value is the option's text (the first option by default); `checkParameterValues`
        also accepts an option's index, as most QGIS enums take."""
        parameter = QgsProcessingParameterEnum(name, description, options=options, defaultValue=options[0])
        parameter.setUsesStaticStrings(True)
        return parameter

    @staticmethod
    def advanced(parameter):
        parameter.setFlags(parameter.flags() | PARAMETER_ADVANCED)
        return parameter

    def with_option_texts(self, parameters) -> dict:
        """``parameters`` with enum values given as an option index (0, "2") or in another letter
        case ("db") replaced by the option's text, so both forms are accepted everywhere."""
        resolved = dict(parameters)
        for definition in self.parameterDefinitions():
            value = parameters.get(definition.name())
            if not isinstance(definition, QgsProcessingParameterEnum) or not definition.usesStaticStrings() or \
                    value is None or isinstance(value, bool):
                continue
            options = definition.options()
            text = str(value).strip()
            if text.isdigit() and int(text) < len(options) and text not in options:
                resolved[definition.name()] = options[int(text)]
            else:
                resolved[definition.name()] = next((o for o in options if o.lower() == text.lower()), value)
        return resolved

    def explained_problem(self, parameters, context) -> str | None:
        """What is wrong with ``parameters``, said before the shared checks; None by default. An algorithm whose
        core checks its inputs and options returns that check's message (see checks.parameter_problem)."""
        return None

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        parameters = self.with_option_texts(parameters)
        problem = self.explained_problem(parameters, context)
        if problem:
            return False, problem
        for definition in self.parameterDefinitions():
            value = parameters.get(definition.name())
            # Values still not an option's text here are unknown texts or out-of-range indexes.
            if (isinstance(definition, QgsProcessingParameterEnum) and definition.usesStaticStrings()
                    and isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip()
                    and value not in definition.options()):
                return False, (f"{definition.description()}: '{value}' is not an option. Choose one of: "
                               f"{', '.join(definition.options())}.")
        # Before any work: no output may be one of the run's inputs or another of its outputs, and files are
        # named for the format written into them.
        try:
            check_distinct_files(*run_files(self, parameters, context)[::-1])
        except InferenceError as error:
            return False, str(error)
        problem = (file_extension_problem(self, parameters, context) or geopackage_problem(self, parameters)
                   or unacceptable_value_problem(self, parameters, context))
        if problem:
            return False, problem
        return super().checkParameterValues(parameters, context)

    def optional_output_layer(self, parameters, name, context) -> str | None:
        """The destination of an optional layer output, or None when left empty. A batch row gives an
        empty output as an empty output definition: asking Processing for its layer would queue a
        nameless layer to load, reported in red as "not correctly generated"."""
        value = parameters.get(name)
        if isinstance(value, QgsProcessingOutputLayerDefinition):
            value, _ = value.sink.valueAsString(context.expressionContext(), "")
        if value is None or value == "":
            return None
        return self.parameterAsOutputLayer(parameters, name, context) or None

    def optional_number(self, parameters, name, context, zero_is_default=False):
        """The value of an optional number parameter, or None when left empty (model default)."""
        value = parameters.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        number = self.parameterAsDouble(parameters, name, context)
        definition = self.parameterDefinition(name)
        if definition.dataType() == NUMBER_INTEGER:
            number = int(number)
        if zero_is_default and number == 0:
            return None
        return number

    def enum_text(self, parameters, name, context) -> str:
        """The option text of an enum parameter; a text or index that is no option is returned as
        given, so that the engine's check names it (QGIS would silently take the default)."""
        value = parameters.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and \
                not self.parameterDefinition(name).checkValueIsAcceptable(value):
            return str(value)
        return self.parameterAsEnumString(parameters, name, context)

    def raster_file(self, parameters, name, context):
        """(layer, GDAL source) of the raster parameter ``name``; layers GDAL cannot open by name are refused."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, name))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"The input layer '{layer.name()}' is not a raster file GDAL can read (its data provider "
                f"is '{layer.providerType()}'). Save it as a GeoTIFF (Raster > Conversion > Translate) "
                f"and run again on that file.")
        return layer, layer.source()
