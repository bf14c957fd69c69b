"""Vectorise Classes (sarlulc:vectorise): class raster → styled class polygons with a minimum mapping unit."""

import math
from pathlib import Path

from qgis.core import (
    QgsDistanceArea,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsVectorLayer,
)

from ...sarlulc.fieldwork.areas import pixel_areas
from ...sarlulc.fieldwork.generalise import CODE_FIELD, MAJORITY_SIZES, generalise, polygonise
from ...sarlulc.fieldwork.legend import open_class_raster
from ..algorithm import PluginAlgorithm
from ..compat import (
    AREA_HECTARES,
    DISTANCE_METERS,
    FIELD_DOUBLE,
    FIELD_INT,
    FIELD_STRING,
    NUMBER_DOUBLE,
    SOURCE_VECTOR_POLYGON,
    WKB_POLYGON,
)
from .. import styling
from ..messages import cancelled, engine_errors
from ..parameters import whole_number_widget
from . import TOOLBOX_GROUP
from .common import ClassRasterMixin, check_destination, remove_sink_output, set_layer_metadata

MIN_AREA_UNITS = ("square metres", "pixels")
DEFAULT_MIN_AREA_M2 = 5000.0  # 0.5 ha: 50 pixels of 10 m
# (option shown to users, majority window in pixels)
SMOOTHING = (("none", 0), ("light", 3), ("medium", 5), ("strong", 7))
assert tuple(size for _, size in SMOOTHING) == MAJORITY_SIZES


class VectoriseAlgorithm(ClassRasterMixin, PluginAlgorithm):
    """Generalises the class raster on its own grid (smoothing, sieve), then polygonises it with GDAL."""

    GROUP = TOOLBOX_GROUP

    INPUT = "INPUT"
    MIN_AREA = "MIN_AREA"
    MIN_AREA_UNIT = "MIN_AREA_UNIT"
    SMOOTHING = "SMOOTHING"
    OUTPUT = "OUTPUT"
    OUTPUT_RASTER = "OUTPUT_RASTER"
    POLYGONS = "POLYGONS"
    MIN_AREA_PIXELS = "MIN_AREA_PIXELS"

    def name(self):
        return "vectorise"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Vectorise Classes"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>Turns a class raster (the output of SAR LULC Segment or Water Detect, or any class raster with a "
            "legend) into class polygons for maps, field apps and GIS analysis, styled with the class colours.</p>"
            "<p><b>Minimum mapping unit</b>: regions smaller than this are merged into their largest neighbour "
            "(GDAL's sieve, applied with doubling sizes so speckle merges into real regions), in square metres "
            f"(default {DEFAULT_MIN_AREA_M2:g} m² = 0.5 ha, 50 pixels of 10 m) or in pixels; 0 keeps every pixel. "
            "Regions enclosed by nodata are kept whatever their size.</p>"
            "<p><b>Smoothing</b> (optional): a majority filter of the class raster before sieving (light: over "
            "3 x 3 pixels, medium: 5 x 5, strong: 7 x 7), which rounds jagged borders and removes one-pixel "
            "spurs. It works on the raster, so the polygons stay valid and still cover every valid pixel once, "
            "without gaps or overlaps (a geometry simplification could not promise that between neighbours).</p>"
            "<p><b>Outputs</b>: the polygons (any vector format; a GeoPackage keeps the class style as the layer's "
            "default style, so it opens styled in QGIS and QField; other files get a .qml beside them), with the "
            "fields <i>code</i>, <i>class_name</i>, <i>area_ha</i> and <i>perimeter_m</i> (on the ellipsoid for a "
            "geographic CRS, planar otherwise), and, optionally, the <b>generalised class raster</b> the polygons "
            "were made from. Nodata pixels give no polygon. Memory stays bounded: GDAL streams the raster.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster"))
        self.addParameter(whole_number_widget(QgsProcessingParameterNumber(
            self.MIN_AREA, "Minimum mapping unit", NUMBER_DOUBLE,
            defaultValue=DEFAULT_MIN_AREA_M2, minValue=0.0)))
        self.addParameter(self.choice(self.MIN_AREA_UNIT, "Minimum mapping unit in", list(MIN_AREA_UNITS)))
        self.addParameter(self.choice(self.SMOOTHING, "Smoothing", [label for label, _ in SMOOTHING]))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Class polygons", SOURCE_VECTOR_POLYGON))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_RASTER, "Generalised class raster", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.POLYGONS, "Number of polygons"))
        self.addOutput(QgsProcessingOutputNumber(self.MIN_AREA_PIXELS, "Minimum mapping unit in pixels"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        parameters = self.with_option_texts(parameters)
        layer, source, legend = self.class_raster(parameters, self.INPUT, context)
        raster_output = self.optional_output_layer(parameters, self.OUTPUT_RASTER, context)
        check_destination(parameters.get(self.OUTPUT), "polygon output", [source])
        smoothing = dict(SMOOTHING)[self.parameterAsEnumString(parameters, self.SMOOTHING, context) or "none"]
        with engine_errors():
            areas = pixel_areas(open_class_raster(source))
        min_pixels = self.min_area_pixels(parameters, context, areas, layer.height(), feedback)
        if min_pixels > layer.width() * layer.height():
            raise QgsProcessingException(
                f"The minimum mapping unit ({min_pixels:.4g} pixels) is larger than the whole raster "
                f"({layer.width()} x {layer.height()} = {layer.width() * layer.height()} pixels): every region would "
                f"be merged away. Give a minimum mapping unit smaller than the map (default "
                f"{DEFAULT_MIN_AREA_M2:g} m²).")

        generalised = raster_output or QgsProcessingUtils.generateTempFilename("generalised_classes.tif")
        polygons_path = QgsProcessingUtils.generateTempFilename("class_polygons.gpkg")
        try:
            with engine_errors():
                feedback.setProgressText("Smoothing and sieving the class raster")
                report = generalise(source, generalised, min_pixels, smoothing, legend,
                                    progress=lambda percent: feedback.setProgress(0.4 * percent),
                                    is_cancelled=feedback.isCanceled)
                feedback.pushInfo(f"Generalised: smoothing {report.majority_size or 'none'}, regions of at least "
                                  f"{report.min_pixels} px after {report.sieve_passes} sieve pass(es)")
                feedback.setProgressText("Polygonising")
                count = polygonise(generalised, polygons_path,
                                   progress=lambda percent: feedback.setProgress(40 + 0.3 * percent),
                                   is_cancelled=feedback.isCanceled)
            feedback.pushInfo(f"{count} polygons")
            feedback.setProgressText("Writing the polygons with class names, areas and perimeters")
            destination = self.write_polygons(parameters, context, feedback, polygons_path, layer.crs(), legend,
                                              count)
        except BaseException:  # all or none: no generalised raster without its polygons
            if raster_output:
                for path in (raster_output, raster_output + ".aux.xml"):
                    Path(path).unlink(missing_ok=True)
            raise
        finally:  # the intermediate files can be large: gone as soon as they are not needed
            for temporary in (polygons_path,) + (() if raster_output else (generalised, generalised + ".aux.xml")):
                Path(temporary).unlink(missing_ok=True)
        if raster_output:
            styling.write_style_sidecar(raster_output, styling.style_sidecar_path(raster_output), raster_output,
                                        lambda raster: styling.class_renderer(raster, legend.entries))
            styling.hand_over_results(context, raster_output, f"{layer.name()} - generalised classes")
        return {self.OUTPUT: destination, self.OUTPUT_RASTER: raster_output, self.POLYGONS: count,
                self.MIN_AREA_PIXELS: min_pixels}

    def min_area_pixels(self, parameters, context, areas, height, feedback) -> int:
        value = self.parameterAsDouble(parameters, self.MIN_AREA, context)
        if self.parameterAsEnumString(parameters, self.MIN_AREA_UNIT, context) == "pixels":
            pixels = max(1, math.ceil(value))
        else:
            pixel_m2 = areas.nominal_m2(height)
            pixels = max(1, math.ceil(value / pixel_m2 - 1e-9))
            feedback.pushInfo(f"Minimum mapping unit {value:g} m² = {pixels} pixels of {pixel_m2:.1f} m² "
                              f"(areas {areas.method})")
        if pixels == 1:
            feedback.pushInfo("No minimum mapping unit: every region is kept, down to single pixels.")
        return pixels

    def write_polygons(self, parameters, context, feedback, polygons_path, crs, legend, count) -> str:
        """Copy the polygons into the output with class name, area and perimeter, then store the style."""
        fields = QgsFields()
        for name, kind in ((CODE_FIELD, FIELD_INT), ("class_name", FIELD_STRING),
                           ("area_ha", FIELD_DOUBLE), ("perimeter_m", FIELD_DOUBLE)):
            fields.append(QgsField(name, kind))
        sink, destination = self.parameterAsSink(parameters, self.OUTPUT, context, fields, WKB_POLYGON, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        measure = QgsDistanceArea()
        measure.setSourceCrs(crs, context.transformContext())
        # Ellipsoidal measures in degrees; planar ones in a projected CRS, as the class area statistics.
        measure.setEllipsoid(crs.ellipsoidAcronym() if crs.isGeographic() else "NONE")
        names = {entry.code: entry.name for entry in legend.entries}
        polygons = QgsVectorLayer(f"{polygons_path}|layername=classes", "polygons", "ogr")
        try:
            for done, polygon in enumerate(polygons.getFeatures(QgsFeatureRequest()), start=1):
                if feedback.isCanceled():
                    raise cancelled("the polygon output was removed")
                geometry = polygon.geometry()
                code = polygon[CODE_FIELD]
                area = measure.convertAreaMeasurement(measure.measureArea(geometry), AREA_HECTARES)
                perimeter = measure.convertLengthMeasurement(measure.measurePerimeter(geometry),
                                                             DISTANCE_METERS)
                feature = QgsFeature(fields)
                feature.setGeometry(geometry)
                feature.setAttributes([code, names.get(code, f"Class {code}"), area, perimeter])
                if not sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert):
                    raise QgsProcessingException(f"Could not write the polygons: {sink.lastError()}")
                if done % 1000 == 0:
                    feedback.setProgress(70 + 28 * done / max(count, 1))
            del sink  # closes the file before its style is stored in it
        except BaseException:
            sink = None
            remove_sink_output(destination)
            raise
        finally:
            polygons = None
        output_layer = QgsProcessingUtils.mapLayerFromString(destination, context)
        if output_layer is not None:
            output_layer.setRenderer(styling.polygon_class_renderer(legend.entries, CODE_FIELD))
            where = styling.save_default_style(output_layer, "Classes of SAR LULC Vectorise Classes")
            if where:
                feedback.pushInfo(f"Class style stored: {where}")
            if legend.provenance and output_layer.storageType().upper() == "GPKG":
                set_layer_metadata(output_layer.source(), legend.provenance)  # which model made the classes
            styling.layer_style_when_loaded(context, destination, output_layer)
        feedback.setProgress(100)
        return destination
