"""Field Package (sarlulc:fieldpackage): one offline GeoPackage for tablets, with an optional QGIS project."""

from pathlib import Path

from osgeo import gdal, ogr, osr
from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsDefaultValue,
    QgsEditorWidgetSetup,
    QgsMarkerSymbol,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingMultiStepFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProject,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsVectorLayer,
)

from ...sarlulc.inference.contract import PROVENANCE_TASK
from ...sarlulc.rasters.transaction import PendingFiles
from .. import styling
from ..algorithm import PluginAlgorithm
from ..checks import geopackage_tables
from ..compat import ALGORITHM_NO_THREADING, NUMBER_DOUBLE
from ..messages import cancelled, engine_errors
from ..parameters import whole_number_widget
from . import TOOLBOX_GROUP
from .common import ClassRasterMixin, check_destination
from .vectorise import DEFAULT_MIN_AREA_M2, MIN_AREA_UNITS, SMOOTHING

# Tables of the package (the raster tables keep the names the field apps list).
CLASSES_TABLE, WATER_TABLE = "classes", "water"
POLYGONS_TABLE, STATISTICS_TABLE, WATER_STATISTICS_TABLE = "class_polygons", "class_statistics", "water_statistics"
FIELD_CHECKS = "field_checks"
# (name, OGR type, alias) of the field check points.
FIELD_CHECK_FIELDS = (("class_observed", ogr.OFTInteger, "Observed class"), ("photo", ogr.OFTString, "Photo"),
                      ("note", ogr.OFTString, "Note"), ("timestamp", ogr.OFTDateTime, "Time"))


PACKAGE_TABLES = {CLASSES_TABLE, WATER_TABLE, POLYGONS_TABLE, STATISTICS_TABLE, WATER_STATISTICS_TABLE, FIELD_CHECKS}


def check_replaceable_package(package: Path) -> None:
    """Refuse to rebuild over a GeoPackage that holds tables a field package does not write (the user's own
    layers would be lost); a field package of an earlier run may be rebuilt (its observations are kept)."""
    if not package.exists():
        return
    foreign = sorted(set(geopackage_tables(package)) - PACKAGE_TABLES)
    if foreign:
        raise QgsProcessingException(
            f"'{package}' already holds layers that are not part of a field package ({', '.join(foreign)}); "
            f"rebuilding it would lose them. Choose another file name for the field package; nothing was changed.")


def carry_observations(package: Path, partial: Path) -> int:
    """Copy the field observations of an earlier package at ``package`` into the new one's field checks layer
    (geometries transformed to its CRS, fields matched by name); returns how many were copied."""
    if not package.exists() or FIELD_CHECKS not in geopackage_tables(package):
        return 0
    with engine_errors():
        source = ogr.Open(str(package))
        old = source.GetLayerByName(FIELD_CHECKS)
        if old is None or old.GetFeatureCount() == 0:
            return 0
        target = ogr.Open(str(partial), 1)
        new = target.GetLayerByName(FIELD_CHECKS)
        old_srs, new_srs = old.GetSpatialRef(), new.GetSpatialRef()
        transform = None
        if old_srs is not None and new_srs is not None and not old_srs.IsSame(new_srs):
            for srs in (old_srs, new_srs):
                srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            transform = osr.CoordinateTransformation(old_srs, new_srs)
        copied = 0
        target.StartTransaction()
        for feature in old:
            copy = ogr.Feature(new.GetLayerDefn())
            copy.SetFrom(feature)  # fields by name
            copy.SetFID(-1)  # a new fid from the layer
            geometry = feature.GetGeometryRef()
            if geometry is not None and transform is not None:
                geometry = geometry.Clone()
                geometry.Transform(transform)
                copy.SetGeometry(geometry)
            new.CreateFeature(copy)
            copied += 1
        target.CommitTransaction()
        source = target = old = new = None
    return copied


def check_rasters_fit(classes_layer, classes_legend, water_layer, water_legend) -> None:
    """Refuse a water mask given as the class raster or the reverse (by the task SAR LULC recorded in them), and a
    water mask in another CRS than the classes or beside them: the package would show the wrong layers."""
    tasks = [legend.provenance.get(PROVENANCE_TASK) if legend else None for legend in (classes_legend, water_legend)]
    if tasks[0] == "water" or tasks[1] == "lulc":
        raise QgsProcessingException(
            f"The class raster '{classes_layer.name()}' is a {'water mask' if tasks[0] == 'water' else 'class map'}"
            + (f" and the water mask '{water_layer.name()}' a land-cover map" if tasks[1] == "lulc" else "")
            + ": the two look swapped. Give the land-cover map as Class raster and the water mask as Water mask.")
    if water_layer is None:
        return
    if water_layer.crs() != classes_layer.crs():
        raise QgsProcessingException(
            f"The water mask '{water_layer.name()}' is in {water_layer.crs().authid() or 'another CRS'}, the class "
            f"raster in {classes_layer.crs().authid() or 'another CRS'}: give both on the same grid (run Water Detect "
            f"on the scene that gave the classes).")
    if not water_layer.extent().intersects(classes_layer.extent()):
        raise QgsProcessingException(
            f"The water mask '{water_layer.name()}' does not overlap the class raster '{classes_layer.name()}': give "
            f"the water mask of the same scene.")


class FieldPackageAlgorithm(ClassRasterMixin, PluginAlgorithm):
    """Bundles rasters, styled polygons, statistics and an empty ground-truth layer into one GeoPackage."""

    GROUP = TOOLBOX_GROUP

    GEOPACKAGE_OUTPUTS_REBUILT = ("OUTPUT",)  # rebuilt by its own rules: observations kept, foreign tables refused

    CLASSES = "CLASSES"
    WATER = "WATER"
    MIN_AREA = "MIN_AREA"
    MIN_AREA_UNIT = "MIN_AREA_UNIT"
    SMOOTHING = "SMOOTHING"
    OUTPUT = "OUTPUT"
    OUTPUT_PROJECT = "OUTPUT_PROJECT"
    POLYGONS = "POLYGONS"

    def name(self):
        return "fieldpackage"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Field Package"

    def flags(self):
        # Writes a QGIS project (a QgsProject is not meant to leave the main thread).
        return super().flags() | ALGORITHM_NO_THREADING

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>One GeoPackage to take into the field on a tablet (QField, Mergin Maps or any GeoPackage reader), "
            "working offline:</p><ul>"
            f"<li><b>{CLASSES_TABLE}</b> and <b>{WATER_TABLE}</b>: the class raster and the optional water mask as "
            "raster tables (exact class codes, colour table);</li>"
            f"<li><b>{POLYGONS_TABLE}</b>: the classes as polygons (Vectorise Classes, with its minimum mapping unit "
            "and smoothing), styled with the class colours as the layer's default style;</li>"
            f"<li><b>{STATISTICS_TABLE}</b> (and <b>{WATER_STATISTICS_TABLE}</b>): the area of each class (Class Area "
            "Statistics);</li>"
            f"<li><b>{FIELD_CHECKS}</b>: an empty, editable point layer for ground truthing, with a form: "
            "<i>class_observed</i> (a drop-down of the class names), <i>photo</i>, <i>note</i> and <i>timestamp</i> "
            "(filled with the time of the observation).</li></ul>"
            "<p>Back from the field, <b>Evaluate Against Reference</b> scores the map against the field checks: "
            f"choose the package's {FIELD_CHECKS} layer as reference.</p>"
            "<p><b>QGIS project</b> (optional): a .qgz next to the GeoPackage that opens all of it styled "
            "(it refers to the GeoPackage by a relative path: keep them together). The GeoPackage is written under a "
            "temporary name and renamed when complete.</p>"
            "<p><b>Running again into the same package</b> rebuilds it from the new results and <b>keeps every field "
            f"observation</b> of its {FIELD_CHECKS} layer (copied into the new one; the log says how many). A "
            "GeoPackage that holds other layers of yours is never replaced: choose another file name.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.CLASSES, "Class raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.WATER, "Water mask", optional=True))
        self.addParameter(whole_number_widget(QgsProcessingParameterNumber(
            self.MIN_AREA, "Minimum mapping unit of the polygons", NUMBER_DOUBLE,
            defaultValue=DEFAULT_MIN_AREA_M2, minValue=0.0)))
        self.addParameter(self.choice(self.MIN_AREA_UNIT, "Minimum mapping unit in", list(MIN_AREA_UNITS)))
        self.addParameter(self.choice(self.SMOOTHING, "Smoothing of the polygons", [label for label, _ in SMOOTHING]))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, "Field package", "GeoPackage (*.gpkg)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_PROJECT, "QGIS project opening the package", "QGIS projects (*.qgz)", optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.POLYGONS, "Number of class polygons"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        parameters = self.with_option_texts(parameters)
        classes_layer, classes, classes_legend = self.class_raster(parameters, self.CLASSES, context)
        water_layer, water, water_legend = (self.class_raster(parameters, self.WATER, context)
                                            if parameters.get(self.WATER) else (None, None, None))
        check_rasters_fit(classes_layer, classes_legend, water_layer, water_legend)
        package = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        project_path = self.parameterAsFileOutput(parameters, self.OUTPUT_PROJECT, context)
        inputs = [classes] + ([water] if water else [])
        check_destination(str(package), "field package", inputs)
        if project_path:
            check_destination(project_path, "QGIS project", inputs)
        check_replaceable_package(package)

        steps = QgsProcessingMultiStepFeedback(5 if project_path else 4, feedback)
        # Built under its own name in a hidden folder (QGIS picks the vector driver from all of a name after its
        # first dot), put in place whole when everything succeeded; nothing is left otherwise.
        with engine_errors(), PendingFiles() as transaction:
            partial = transaction.new(package, plain_name=True)
            steps.setProgressText("Raster tables")
            self.add_raster(classes, partial, CLASSES_TABLE, classes_layer.name(), steps, append=False)
            if water:
                self.add_raster(water, partial, WATER_TABLE, water_layer.name(), steps, append=True)
            # Child runs get their own context: the layers they open on the partial file close with it.
            child_context = QgsProcessingContext()
            child_context.setProject(context.project())
            child_context.setTransformContext(context.transformContext())
            steps.setCurrentStep(1)
            steps.setProgressText("Class polygons")
            polygons = self.run_child("sarlulc:vectorise", {
                "INPUT": classes, "MIN_AREA": parameters.get(self.MIN_AREA, DEFAULT_MIN_AREA_M2),
                "MIN_AREA_UNIT": parameters.get(self.MIN_AREA_UNIT, MIN_AREA_UNITS[0]),
                "SMOOTHING": parameters.get(self.SMOOTHING, SMOOTHING[0][0]),
                "OUTPUT": self.table_destination(partial, POLYGONS_TABLE)}, child_context, steps)
            steps.setCurrentStep(2)
            steps.setProgressText("Class area statistics")
            for source, table in ((classes, STATISTICS_TABLE),) + (((water, WATER_STATISTICS_TABLE),) if water else ()):
                self.run_child("sarlulc:areastats", {"INPUT": source, "OUTPUT_HTML": None,
                                                     "OUTPUT": self.table_destination(partial, table)},
                               child_context, steps)
            del child_context
            steps.setCurrentStep(3)
            steps.setProgressText("Field checks layer")
            self.add_field_checks(partial, classes_layer.crs().toWkt(), classes_legend)
            kept = carry_observations(package, partial)
            if kept:
                feedback.pushInfo(f"Kept the {kept} field observation(s) of the earlier package's {FIELD_CHECKS} layer "
                                  f"(copied into the new one, in its CRS)")
        feedback.pushInfo(f"Field package written: {package} ({package.stat().st_size / 1e6:.1f} MB)")
        outputs = {self.OUTPUT: str(package), self.POLYGONS: polygons["POLYGONS"]}
        layers, hidden = self.package_layers(package, classes_legend, water_legend)
        styling.load_styled_when_done(context, layers, hidden)  # as in the package's own project
        if project_path:
            steps.setCurrentStep(4)
            # The project takes the layers (and deletes them with it).
            outputs[self.OUTPUT_PROJECT] = self.write_project(project_path, package, classes_layer.crs(), layers,
                                                              hidden)
        return outputs

    @staticmethod
    def table_destination(package: Path, table: str) -> str:
        """A Processing sink destination for a table inside ``package`` (created or added to)."""
        return f"ogr:dbname='{package}' table=\"{table}\" (geom)"

    def add_raster(self, source, package: Path, table: str, description: str, feedback, append: bool) -> None:
        """Copy ``source`` into ``package`` as a raster table with exact codes (PNG tiles keep 8/16-bit values)."""
        options = [f"RASTER_TABLE={table}", f"RASTER_DESCRIPTION={description}", "TILE_FORMAT=PNG"]
        if append:
            options.append("APPEND_SUBDATASET=YES")

        def progress(complete, _message, _data):
            feedback.setProgress(100.0 * complete)
            return 0 if feedback.isCanceled() else 1

        try:
            gdal.Translate(str(package), source, format="GPKG", creationOptions=options, callback=progress)
        except RuntimeError as error:
            if feedback.isCanceled():
                raise cancelled("no field package was written") from error
            raise QgsProcessingException(f"Could not copy '{source}' into the field package: {error}") from error

    def run_child(self, algorithm_id, parameters, context, feedback) -> dict:
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
        results, ok = algorithm.run(parameters, context, feedback, {}, False)
        if not ok:
            raise QgsProcessingException(f"{algorithm.displayName()} failed; see the log above.")
        return results

    def add_field_checks(self, package: Path, crs_wkt: str, legend) -> None:
        """The empty ground-truth point layer, with its form (class drop-down, photo, time) as default style."""
        with engine_errors():
            source = ogr.Open(str(package), 1)
            srs = osr.SpatialReference()
            srs.ImportFromWkt(crs_wkt)
            layer = source.CreateLayer(FIELD_CHECKS, srs, ogr.wkbPoint, ["FID=fid"])
            for name, kind, _ in FIELD_CHECK_FIELDS:
                layer.CreateField(ogr.FieldDefn(name, kind))
            layer = source = None
        checks = QgsVectorLayer(f"{package}|layername={FIELD_CHECKS}", FIELD_CHECKS, "ogr")
        if not checks.isValid():
            raise QgsProcessingException(f"The field checks layer could not be created in '{package}'.")
        fields = checks.fields()
        for name, _, alias in FIELD_CHECK_FIELDS:
            checks.setFieldAlias(fields.indexOf(name), alias)
        checks.setEditorWidgetSetup(fields.indexOf("class_observed"), QgsEditorWidgetSetup("ValueMap", {
            "map": [{entry.name: entry.code} for entry in legend.entries]}))
        checks.setEditorWidgetSetup(fields.indexOf("photo"), QgsEditorWidgetSetup("ExternalResource", {
            "DocumentViewer": 1, "FileWidget": True, "RelativeStorage": 1}))
        checks.setEditorWidgetSetup(fields.indexOf("note"), QgsEditorWidgetSetup("TextEdit", {"IsMultiline": True}))
        checks.setEditorWidgetSetup(fields.indexOf("timestamp"), QgsEditorWidgetSetup("DateTime", {
            "allow_null": True, "calendar_popup": True, "display_format": "yyyy-MM-dd HH:mm:ss",
            "field_format": "yyyy-MM-dd HH:mm:ss", "field_iso_format": True}))
        checks.setDefaultValueDefinition(fields.indexOf("timestamp"), QgsDefaultValue("now()"))
        categories = [QgsRendererCategory(entry.code, self.point_symbol(entry.color), entry.name)
                      for entry in legend.entries]
        categories.append(QgsRendererCategory(None, self.point_symbol("#ffffff"), "Not yet observed"))
        checks.setRenderer(QgsCategorizedSymbolRenderer("class_observed", categories))
        styling.save_default_style(checks, "Field checks: form and observed class colours")

    @staticmethod
    def point_symbol(color: str) -> QgsMarkerSymbol:
        return QgsMarkerSymbol.createSimple({"name": "circle", "color": color, "outline_color": "#000000",
                                             "outline_width": "0.4", "size": "3.5"})

    @staticmethod
    def package_layers(package: Path, classes_legend, water_legend) -> tuple[list, set]:
        """The package's layers, styled, in the order a map shows them (top first), and the ids of those
        switched off: the class raster, which shows what the polygons show."""
        layers = [QgsVectorLayer(f"{package}|layername={FIELD_CHECKS}", "Field checks", "ogr"),
                  QgsVectorLayer(f"{package}|layername={POLYGONS_TABLE}", "Class polygons", "ogr")]
        rasters = [(CLASSES_TABLE, "Classes", classes_legend)] + ([(WATER_TABLE, "Water", water_legend)]
                                                                   if water_legend else [])
        for table, name, legend in reversed(rasters):
            raster = QgsRasterLayer(f"GPKG:{package}:{table}", name, "gdal")
            water = gdal.Open(f"GPKG:{package}:{table}").GetMetadataItem(PROVENANCE_TASK) == "water"
            water_entry = next((e for e in legend.entries if e.code == styling.WATER_VALUE), None)
            raster.setRenderer(styling.water_renderer(raster, water_entry) if water and water_entry
                               else styling.class_renderer(raster, legend.entries))
            layers.append(raster)
        layers += [QgsVectorLayer(f"{package}|layername={STATISTICS_TABLE}", "Class statistics", "ogr")]
        if water_legend:
            layers.append(QgsVectorLayer(f"{package}|layername={WATER_STATISTICS_TABLE}", "Water statistics", "ogr"))
        for layer in layers:
            if not layer.isValid():
                raise QgsProcessingException(f"The package layer '{layer.name()}' could not be opened.")
        return layers, {layer.id() for layer in layers if layer.source().endswith(f":{CLASSES_TABLE}")}

    def write_project(self, project_path, package: Path, crs, layers, hidden: set) -> str:
        """A .qgz beside the package opening its layers styled (relative paths)."""
        project = QgsProject()
        project.setTitle(f"Field package {package.stem}")
        project.setCrs(crs)
        for layer in layers:
            project.addMapLayer(layer, False)
            node = project.layerTreeRoot().addLayer(layer)  # in this order, top first
            node.setItemVisibilityChecked(layer.id() not in hidden)
        failure = None
        try:
            with engine_errors(), PendingFiles() as transaction:  # beside the package: the same relative paths
                if not project.write(str(transaction.new(project_path))):
                    raise QgsProcessingException(f"The QGIS project '{project_path}' could not be written: "
                                                 f"{project.error()}.")
        except QgsProcessingException as error:
            failure = str(error)
        if failure is not None:
            # Raised afresh, without this frame: the caller keeps the exception, and a project (with its layers)
            # that outlives QGIS crashes it at exit.
            del project, layers
            raise QgsProcessingException(f"{failure} The field package itself is complete: {package}")
        return str(project_path)
