"""The parameters that say how a model reads the SAR input and runs over it, and the engine's RunOptions
made from them: shared by Segment, Water Detect and Segment Tiles (the same names in all three)."""

from qgis.core import QgsProcessingParameterNumber

from ...model.inference.engine import WATER_METHODS, RunOptions
from ...model.inference.sar_input import ALOS2_CALIBRATION_FACTOR_DB, InputUnits, SpeckleFilter
from ...model.inference.session import DEVICES, PRECISIONS  # imports onnxruntime only when a session starts
from ..compat import NUMBER_DOUBLE, NUMBER_INTEGER, PARAMETER_OPTIONAL
from ..parameters import BUNDLED_TILE_SIZE

# (option shown to users, RunOptions.output_grid)
OUTPUT_GRIDS = (("input raster grid", "input"), ("model grid", "model"))


class ModelOptionsMixin:
    """Parameters and RunOptions of a model run, for a PluginAlgorithm (whose choice, advanced, enum_text and
    optional_number it uses)."""

    BAND = "BAND"
    INPUT_UNITS = "INPUT_UNITS"
    CALIBRATION_FACTOR = "CALIBRATION_FACTOR"
    SPECKLE_FILTER = "SPECKLE_FILTER"
    FILTER_SIZE = "FILTER_SIZE"
    OUTPUT_GRID = "OUTPUT_GRID"
    MODEL = "MODEL"
    DEVICE = "DEVICE"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    BATCH_SIZE = "BATCH_SIZE"
    THREADS = "THREADS"
    PRECISION = "PRECISION"
    METHOD = "METHOD"
    THRESHOLD = "THRESHOLD"

    @classmethod
    def reading_parameters(cls) -> list:
        """How the input band is read (units, calibration factor, speckle filter)."""
        return [cls.choice(cls.INPUT_UNITS, "Input units", [u.value for u in InputUnits]),
                cls.advanced(QgsProcessingParameterNumber(cls.CALIBRATION_FACTOR, "Calibration factor (dB)",
                                                          NUMBER_DOUBLE, defaultValue=ALOS2_CALIBRATION_FACTOR_DB)),
                cls.choice(cls.SPECKLE_FILTER, "Speckle filter", [f.value for f in SpeckleFilter]),
                cls.advanced(QgsProcessingParameterNumber(cls.FILTER_SIZE, "Filter window (px)", NUMBER_INTEGER,
                                                          defaultValue=7, minValue=3, maxValue=31))]

    @classmethod
    def run_parameters(cls, threads_description: str) -> list:
        """The advanced parameters of how the model runs (tiles, batch, threads, precision, output grid)."""
        parameters = [cls.advanced(QgsProcessingParameterNumber(name, description, NUMBER_INTEGER, optional=True,
                                                                minValue=0))
                      for name, description in ((cls.TILE_SIZE, f"Tile size (px; bundled: {BUNDLED_TILE_SIZE})"),
                                                (cls.OVERLAP, "Tile overlap (px)"),
                                                (cls.BATCH_SIZE, "Tiles per batch"),
                                                (cls.THREADS, threads_description))]
        # Optional, so that models saved before it existed still validate (empty: auto).
        precision = cls.advanced(cls.choice(cls.PRECISION, "Precision", list(PRECISIONS)))
        precision.setFlags(precision.flags() | PARAMETER_OPTIONAL)
        return parameters + [precision, cls.advanced(cls.choice(cls.OUTPUT_GRID, "Output grid",
                                                                [label for label, _ in OUTPUT_GRIDS]))]

    @classmethod
    def water_threshold_parameter(cls) -> QgsProcessingParameterNumber:
        """The water probability threshold of a water run (empty: the model's)."""
        return QgsProcessingParameterNumber(cls.THRESHOLD, "Water threshold (empty: model's)", NUMBER_DOUBLE,
                                            optional=True, minValue=0.0, maxValue=1.0)

    def run_options(self, parameters, context) -> RunOptions:
        """The engine's RunOptions from ``parameters`` (option texts resolved by `with_option_texts`)."""
        output_grid = self.parameterAsEnumString(parameters, self.OUTPUT_GRID, context)
        return RunOptions(
            band=self.parameterAsInt(parameters, self.BAND, context),
            device=self.enum_text(parameters, self.DEVICE, context) or DEVICES[0],
            input_units=self.enum_text(parameters, self.INPUT_UNITS, context) or InputUnits.AUTO.value,
            calibration_factor=self.parameterAsDouble(parameters, self.CALIBRATION_FACTOR, context),
            speckle_filter=self.enum_text(parameters, self.SPECKLE_FILTER, context) or SpeckleFilter.NONE.value,
            filter_size=self.parameterAsInt(parameters, self.FILTER_SIZE, context),
            output_grid=dict(OUTPUT_GRIDS).get(output_grid, OUTPUT_GRIDS[0][1]),
            tile_size=self.optional_number(parameters, self.TILE_SIZE, context, zero_is_default=True),
            tile_overlap=self.optional_number(parameters, self.OVERLAP, context),
            batch_size=self.optional_number(parameters, self.BATCH_SIZE, context, zero_is_default=True),
            threads=self.optional_number(parameters, self.THREADS, context, zero_is_default=True),
            precision=self.enum_text(parameters, self.PRECISION, context) or PRECISIONS[0],
            **self.task_options(parameters, context))

    def task_options(self, parameters, context) -> dict:
        """RunOptions fields only this algorithm sets (none by default)."""
        return {}

    def water_options(self, parameters, context) -> dict:
        """RunOptions fields of a water run: the water method and the probability threshold."""
        return {"water_threshold": self.optional_number(parameters, self.THRESHOLD, context),
                "method": self.enum_text(parameters, self.METHOD, context) or WATER_METHODS[0]}
