"""Class Area Statistics (sarlulc:areastats): pixels, area and share of each class, optionally per zone."""

import json

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from ...sarlulc.fieldwork.statistics import Zone, class_areas, write_html
from ..algorithm import PluginAlgorithm
from ..compat import (
    FIELD_DOUBLE,
    FIELD_INT,
    FIELD_INT64,
    FIELD_STRING,
    SOURCE_VECTOR,
    SOURCE_VECTOR_POLYGON,
    WKB_NO_GEOMETRY,
)
from ..messages import cancelled, engine_errors
from . import TOOLBOX_GROUP
from .common import ClassRasterMixin, check_destination, remove_sink_output

# (field name, type) of the statistics table; "zone" only when zones are given.
TABLE_FIELDS = (("code", FIELD_INT), ("class_name", FIELD_STRING), ("color", FIELD_STRING),
                ("pixels", FIELD_INT64), ("area_m2", FIELD_DOUBLE), ("area_ha", FIELD_DOUBLE),
                ("area_km2", FIELD_DOUBLE), ("percent", FIELD_DOUBLE))


class AreaStatisticsAlgorithm(ClassRasterMixin, PluginAlgorithm):
    """Counts every class's pixels and measures their area, for the whole raster or zone by zone."""

    GROUP = TOOLBOX_GROUP

    INPUT = "INPUT"
    ZONES = "ZONES"
    ZONE_FIELD = "ZONE_FIELD"
    OUTPUT = "OUTPUT"
    OUTPUT_HTML = "OUTPUT_HTML"
    VALID_PIXELS = "VALID_PIXELS"
    NODATA_PIXELS = "NODATA_PIXELS"
    VALID_AREA_HA = "VALID_AREA_HA"
    AREAS_HA = "AREAS_HA"

    def name(self):
        return "areastats"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Class Area Statistics"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>How much of each class a class raster holds (the output of SAR LULC Segment, Water Detect, or any "
            "raster of class codes): pixel count, area in m², ha and km², and share of the valid area, for the whole "
            "raster and, optionally, for each zone of a polygon layer (municipalities, parcels, a flood AOI).</p>"
            "<p><b>Class names and colours</b> come from the raster's own legend (what the plugin's outputs carry), "
            "else from the layer's Paletted/Unique values style. A raster with neither is counted with numbered "
            "classes ('Class 3') and a warning. Nodata pixels are left out.</p>"
            "<p><b>Areas</b>: in a projected CRS, the pixel area of the grid (exact; the log warns if the CRS distorts "
            "areas by more than 1 % there, as Web Mercator does); in a geographic CRS (degrees), each row's "
            "pixel area on the CRS's ellipsoid, so EPSG:4326 rasters get true areas. Pixel counts are exact.</p>"
            "<p><b>Zones</b> (optional): a polygon layer, in any CRS; <b>zone field</b> names each zone (empty: the "
            "feature id). Features with the same value form one zone. A pixel belongs to a zone when its centre "
            "lies inside; overlapping zones each count their pixels. The table then has one row per zone and "
            "class.</p>"
            "<p><b>Outputs</b>: the table (GeoPackage, CSV, spreadsheet: any table format QGIS writes), an HTML "
            "report with a bar chart in the class colours, and numbers for models: valid and nodata pixels, valid "
            "area (ha), and every class's area in ha as a JSON text (<i>AREAS_HA</i>, e.g. "
            "<code>map_get(json_to_map(@areastats_AREAS_HA), 'Water')</code> in an expression).</p>")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster"))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.ZONES, "Zones", [SOURCE_VECTOR_POLYGON], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.ZONE_FIELD, "Zone field (empty: feature id)", parentLayerParameterName=self.ZONES, optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Class areas", SOURCE_VECTOR))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, "Report", "HTML files (*.html)", optional=True, createByDefault=True))
        for name, description in ((self.VALID_PIXELS, "Valid pixels"), (self.NODATA_PIXELS, "Nodata pixels"),
                                  (self.VALID_AREA_HA, "Valid area (ha)")):
            self.addOutput(QgsProcessingOutputNumber(name, description))
        self.addOutput(QgsProcessingOutputString(self.AREAS_HA, "Area of each class in ha (JSON)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        layer, source, legend = self.class_raster(parameters, self.INPUT, context, require_legend=False)
        zones = self.zones(parameters, context, layer.crs(), feedback)
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        check_destination(parameters.get(self.OUTPUT), "statistics table", [source])
        if html_path:
            check_destination(html_path, "report", [source])

        feedback.pushInfo(f"Counting the classes of {source}" + (f" in {len(zones)} zone(s)" if zones else ""))
        with engine_errors():
            statistics = class_areas(source, zones, legend, progress=feedback.setProgress,
                                     is_cancelled=feedback.isCanceled)
        for warning in statistics.warnings:
            feedback.reportError(warning, fatalError=False)
        total = statistics.total
        feedback.pushInfo(f"Areas {statistics.areas.method}. {total.valid_pixels} valid pixels "
                          f"({total.area_m2 / 1e4:.2f} ha), {statistics.nodata_pixels} nodata pixels.")
        for item in total.classes:
            feedback.pushInfo(f"  {item.entry.code} {item.entry.name}: {item.pixels} px, {item.area_ha:.2f} ha, "
                              f"{total.percent(item):.2f} %")

        fields = QgsFields()
        if zones:
            fields.append(QgsField("zone", FIELD_STRING))
        for name, kind in TABLE_FIELDS:
            fields.append(QgsField(name, kind))
        sink, destination = self.parameterAsSink(parameters, self.OUTPUT, context, fields, WKB_NO_GEOMETRY)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        try:
            for row in statistics.table_rows():
                feature = QgsFeature(fields)
                feature.setAttributes(([row["zone"]] if zones else []) + [row[name] for name, _ in TABLE_FIELDS])
                if not sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert):
                    raise QgsProcessingException(f"Could not write the statistics table: {sink.lastError()}")
            del sink  # closes the file
        except BaseException:
            sink = None
            remove_sink_output(destination)
            raise
        outputs = {
            self.OUTPUT: destination,
            self.VALID_PIXELS: total.valid_pixels,
            self.NODATA_PIXELS: statistics.nodata_pixels,
            self.VALID_AREA_HA: total.area_m2 / 1e4,
            self.AREAS_HA: json.dumps({item.entry.name: item.area_ha for item in total.classes}),
        }
        if html_path:
            with engine_errors():
                write_html(statistics, html_path, f"Class areas of {layer.name()}")
            outputs[self.OUTPUT_HTML] = html_path
        return outputs

    def zones(self, parameters, context, raster_crs, feedback) -> list[Zone]:
        """The zones in the raster's CRS, one per value of the zone field (or per feature)."""
        source = self.parameterAsSource(parameters, self.ZONES, context)
        field = self.parameterAsString(parameters, self.ZONE_FIELD, context)
        if source is None:
            if field:
                raise QgsProcessingException(f"A zone field ('{field}') was given but no zone layer: choose the "
                                             "polygon layer of the zones, or leave the zone field empty.")
            return []
        field_index = -1
        if field:
            field_index = source.fields().lookupField(field)
            if field_index < 0:
                names = ", ".join(source.fields().names()) or "none"
                raise QgsProcessingException(
                    f"The zone field '{field}' is not a field of the zone layer '{source.sourceName()}'. Its fields "
                    f"are: {names}. Choose one of them, or leave the zone field empty to use the feature id.")
        transform = QgsCoordinateTransform(source.sourceCrs(), raster_crs, context.transformContext())
        grouped: dict[str, list[bytes]] = {}
        for feature in source.getFeatures():
            if feedback.isCanceled():
                raise cancelled("no statistics were written")
            geometry = feature.geometry()
            if geometry.isNull() or geometry.isEmpty():
                continue
            geometry.transform(transform)
            value = feature.attribute(field_index) if field_index >= 0 else feature.id()
            name = "(no value)" if value is None or str(value) == "NULL" else str(value)
            grouped.setdefault(name, []).append(bytes(geometry.asWkb()))
        if not grouped:
            raise QgsProcessingException(f"The zone layer '{source.sourceName()}' has no polygon: choose a layer "
                                         "with the zones' polygons.")
        feedback.pushInfo(f"{len(grouped)} zone(s) from the field '{field}'" if field else
                          f"{len(grouped)} zone(s), one per feature (no zone field given)")
        return [Zone(name, tuple(wkbs)) for name, wkbs in grouped.items()]
