"""The parameters that say how a model reads the SAR input and runs over it, and the engine's RunOptions
made from them: shared by Segment, Water Detect and Segment Tiles (the same names in all three). Each parameter
sets one RunOptions field and takes its choices and default from that field (sarlulc/inference/options.py), as the
command line does."""

from qgis.core import QgsProcessingParameterNumber

from ...sarlulc.inference.options import RunOptions, option_default, option_words
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
    def option_choice(cls, name, description, field):
        """An enum parameter offering the values of the RunOptions field ``field``."""
        return cls.choice(name, description, option_words(field))

    @classmethod
    def reading_parameters(cls) -> list:
        """How the input band is read (units, calibration factor, speckle filter)."""
        return [cls.option_choice(cls.INPUT_UNITS, "Input units", "input_units"),
                cls.advanced(QgsProcessingParameterNumber(cls.CALIBRATION_FACTOR, "Calibration factor (dB)",
                                                          NUMBER_DOUBLE,
                                                          defaultValue=option_default("calibration_factor"))),
                cls.option_choice(cls.SPECKLE_FILTER, "Speckle filter", "speckle_filter"),
                cls.advanced(QgsProcessingParameterNumber(cls.FILTER_SIZE, "Filter window (px)", NUMBER_INTEGER,
                                                          defaultValue=option_default("filter_size"), minValue=3,
                                                          maxValue=31))]

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
        precision = cls.advanced(cls.option_choice(cls.PRECISION, "Precision", "precision"))
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
            device=self.enum_text(parameters, self.DEVICE, context) or option_default("device"),
            input_units=self.enum_text(parameters, self.INPUT_UNITS, context) or option_default("input_units"),
            calibration_factor=self.parameterAsDouble(parameters, self.CALIBRATION_FACTOR, context),
            speckle_filter=self.enum_text(parameters, self.SPECKLE_FILTER, context) or option_default("speckle_filter"),
            filter_size=self.parameterAsInt(parameters, self.FILTER_SIZE, context),
            output_grid=dict(OUTPUT_GRIDS).get(output_grid, option_default("output_grid")),
            tile_size=self.optional_number(parameters, self.TILE_SIZE, context, zero_is_default=True),
            tile_overlap=self.optional_number(parameters, self.OVERLAP, context),
            batch_size=self.optional_number(parameters, self.BATCH_SIZE, context, zero_is_default=True),
            threads=self.optional_number(parameters, self.THREADS, context, zero_is_default=True),
            precision=self.enum_text(parameters, self.PRECISION, context) or option_default("precision"),
            **self.task_options(parameters, context))

    def task_options(self, parameters, context) -> dict:
        """RunOptions fields only this algorithm sets (none by default)."""
        return {}

    def water_options(self, parameters, context) -> dict:
        """RunOptions fields of a water run: the water method and the probability threshold."""
        return {"water_threshold": self.optional_number(parameters, self.THRESHOLD, context),
                "method": self.enum_text(parameters, self.METHOD, context) or option_default("method")}
