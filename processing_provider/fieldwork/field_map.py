"""Field Map (sarlulc:fieldmap): result layers → a print-ready PDF (GeoPDF) and PNG through a QGIS print layout."""

import contextlib
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr
from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsLayoutExporter,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsProject,
    QgsRectangle,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QDate, QSize, Qt

from ...sarlulc.fieldwork.legend import INTEGER_TYPES, read_legend
from ...sarlulc.inference.contract import PROVENANCE_MODEL, PROVENANCE_TASK, PROVENANCE_TRAINED_ON
from ...sarlulc.rasters.transaction import PendingFiles
from ...sarlulc.sar.units import sample_shape
from ..algorithm import PluginAlgorithm
from ..compat import (
    ALGORITHM_NO_THREADING,
    GEOMETRY_POLYGON,
    LAYER_RASTER,
    LAYER_VECTOR,
    NUMBER_DOUBLE,
    NUMBER_INTEGER,
    SOURCE_MAP_LAYER,
    SOURCE_VECTOR_POLYGON,
)
from .. import styling
from ..messages import cancelled, engine_errors
from . import TOOLBOX_GROUP
from .common import check_destination, ogr_source_parts
from .field_map_layout import GRIDS, ORIENTATIONS, PAPER_SIZES_MM, MapSheet, build_layout


def geopdf_available() -> bool:
    """Whether GDAL can write GeoPDF the way QGIS asks it to (its PDF driver's COMPOSITION_FILE, GDAL >= 3)."""
    driver = gdal.GetDriverByName("PDF")
    return driver is not None and "COMPOSITION_FILE" in (driver.GetMetadataItem("DMD_CREATIONOPTIONLIST") or "")


def provenance(layer) -> dict:
    """What the plugin recorded about how a result was made: GDAL metadata of a raster, or of a GeoPackage layer
    written by Vectorise Classes."""
    with contextlib.suppress(RuntimeError):
        if layer.type() == LAYER_RASTER and layer.providerType() == "gdal":
            return gdal.Open(layer.source()).GetMetadata() or {}
        if layer.type() == LAYER_VECTOR and layer.providerType() == "ogr":
            path, name = ogr_source_parts(layer.source())
            source = ogr.Open(path)
            vector = source.GetLayerByName(name) if name else source.GetLayer(0)
            return (vector.GetMetadata() or {}) if vector is not None else {}
    return {}


def codes_present(dataset: gdal.Dataset) -> set[int]:
    """The class codes band 1 holds (8-bit: its exact histogram, one read; wider: a decimated read)."""
    band = dataset.GetRasterBand(1)
    if band.DataType == gdal.GDT_Byte:
        counts = band.GetHistogram(-0.5, 255.5, 256, include_out_of_range=False, approx_ok=False)
        return {code for code, count in enumerate(counts) if count}
    columns, rows = sample_shape(dataset.RasterXSize, dataset.RasterYSize, 1 << 22)
    return {int(code) for code in np.unique(band.ReadAsArray(buf_xsize=columns, buf_ysize=rows))}


# The legend's heading of a result, by the task that made it (results of both tasks each have a "Water" class).
LEGEND_TITLES = {"lulc": "Land cover", "water": "Water mask"}
# A model's training data in the footer, cut at a word: the footer holds three lines (the model card has it all).
TRAINED_ON_CHARACTERS = 110


def shortened(text: str, characters: int) -> str:
    if len(text) <= characters:
        return text
    return text[:characters].rsplit(" ", 1)[0].rstrip(",;:(") + " …"


# 1:100 million: a continent on an A4 sheet; larger scales make no map (and QGIS fails to export them).
MAX_SCALE = 1e8


@contextlib.contextmanager
def atlas_rendering(atlas):
    """The atlas between beginRender and endRender, also when a page fails or is cancelled (a layout left
    rendering crashes QGIS when it is deleted)."""
    atlas.beginRender()
    try:
        yield atlas
    finally:
        atlas.endRender()


class FieldMapAlgorithm(PluginAlgorithm):
    """Lays the results out on a page with everything a field team needs, and exports it."""

    GROUP = TOOLBOX_GROUP

    LAYERS = "LAYERS"
    BACKGROUND = "BACKGROUND"
    TITLE = "TITLE"
    PAPER = "PAPER"
    ORIENTATION = "ORIENTATION"
    SCALE = "SCALE"
    EXTENT = "EXTENT"
    GRID = "GRID"
    OVERVIEW = "OVERVIEW"
    SOURCE = "SOURCE"
    ATLAS = "ATLAS"
    GEOPDF = "GEOPDF"
    DPI = "DPI"
    OUTPUT = "OUTPUT"
    OUTPUT_PNG = "OUTPUT_PNG"
    PAGES = "PAGES"
    GEOREFERENCED = "GEOREFERENCED"

    def name(self):
        return "fieldmap"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Field Map"

    def flags(self):
        # Print layouts and their map renders belong on the main thread, as QGIS's own layout exports do.
        return super().flags() | ALGORITHM_NO_THREADING

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>A print-ready map of results for the field, made with a QGIS print layout: title, the map with a "
            "coordinate grid, the legend with class names and colours, scale, scale bar, north arrow, date, source "
            "and the model that made the map, and an optional overview inset.</p>"
            "<p><b>Result layers</b>: one or more layers, listed top first (the class raster of SAR LULC Segment, a "
            "water mask, the polygons of Vectorise Classes...), drawn with their style; files opened here get their "
            "saved style (.qml or GeoPackage default), and class rasters without one get their legend's colours. "
            "<b>Background</b> (optional): any layer drawn below, e.g. the SAR scene or a WMS/XYZ layer of the "
            "project.</p>"
            "<p><b>Paper</b> A4 or A3, landscape or portrait. <b>Scale</b>: empty or 0 fits the extent (the result "
            "layers', or <b>extent</b>) at the next standard scale (1:10,000, 1:25,000, 1:50,000...); a number "
            "prints at that scale, centred on the extent. <b>Grid</b>: latitude/longitude in degrees, minutes and "
            "seconds, or the map CRS's coordinates, labelled around the frame.</p>"
            "<p><b>Atlas</b> (optional): a polygon layer, e.g. a grid from Create Grid or work areas; the PDF then "
            "has one page per feature, each centred on it.</p>"
            "<p><b>Outputs</b>: the PDF, georeferenced (<b>GeoPDF</b>) when GDAL supports it (the log says), so "
            "field apps such as Avenza Maps show your position on it; text stays searchable. QGIS 3.22 georeferences "
            "single-page PDFs only, so an atlas also gets one GeoPDF per sheet beside it (name_sheet_1.pdf, ...). "
            "Optionally a PNG (with an atlas, one per page: name.png, name_2.png, ...). The model note comes from "
            "the metadata the plugin writes into its results; <b>source</b> adds your own line (sensor, acquisition "
            "date).</p>")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.LAYERS, "Result layers (top first)", SOURCE_MAP_LAYER))
        self.addParameter(QgsProcessingParameterMapLayer(self.BACKGROUND, "Background layer", optional=True))
        self.addParameter(QgsProcessingParameterString(self.TITLE, "Title", defaultValue="Land cover map"))
        self.addParameter(self.choice(self.PAPER, "Paper size", list(PAPER_SIZES_MM)))
        self.addParameter(self.choice(self.ORIENTATION, "Orientation", list(ORIENTATIONS)))
        self.addParameter(QgsProcessingParameterNumber(
            self.SCALE, "Scale 1: (empty: fit the extent)", NUMBER_DOUBLE, optional=True,
            minValue=0.0, maxValue=MAX_SCALE))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Extent (empty: the result layers')",
                                                       optional=True))
        self.addParameter(self.choice(self.GRID, "Coordinate grid", list(GRIDS)))
        self.addParameter(QgsProcessingParameterBoolean(self.OVERVIEW, "Overview inset", defaultValue=False))
        self.addParameter(QgsProcessingParameterString(self.SOURCE, "Source note", optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.ATLAS, "Atlas: one page per polygon of", [SOURCE_VECTOR_POLYGON], optional=True))
        self.addParameter(self.advanced(QgsProcessingParameterBoolean(
            self.GEOPDF, "Georeferenced PDF (GeoPDF)", defaultValue=True)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            self.DPI, "Resolution of rasters in the PDF (dpi)", NUMBER_INTEGER,
            defaultValue=300, minValue=72, maxValue=1200)))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Map (PDF)", "PDF files (*.pdf)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_PNG, "Map (PNG)", "PNG files (*.png)", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.PAGES, "Pages"))
        self.addOutput(QgsProcessingOutputBoolean(self.GEOREFERENCED, "Georeferenced (GeoPDF) written"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        parameters = self.with_option_texts(parameters)
        layers = self.parameterAsLayerList(parameters, self.LAYERS, context)
        if not layers:
            raise QgsProcessingException("No result layer was given: choose the layers to print (for example the "
                                         "class raster of SAR LULC Segment).")
        pdf_path = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        png_path = self.parameterAsFileOutput(parameters, self.OUTPUT_PNG, context)
        sources = [layer.source() for layer in layers]
        check_destination(pdf_path, "map PDF", sources)
        if png_path:
            check_destination(png_path, "map PNG", sources)
        atlas_source = self.parameterAsVectorLayer(parameters, self.ATLAS, context)
        if atlas_source is not None and atlas_source.geometryType() != GEOMETRY_POLYGON:
            kind = QgsWkbTypes.geometryDisplayString(atlas_source.geometryType()).lower()
            raise QgsProcessingException(
                f"The atlas layer '{atlas_source.name()}' holds {kind} geometries; an atlas needs polygons, one per "
                f"page (each page shows its polygon's extent). Buffer points into squares first (Vector geometry > "
                f"Buffer, end cap square), or leave the atlas empty.")

        project = QgsProject()
        results = [self.styled_copy(layer, context, feedback) for layer in layers]
        background_layer = self.parameterAsLayer(parameters, self.BACKGROUND, context)
        background = [self.styled_copy(background_layer, context, feedback)] if background_layer else []
        atlas_layer = atlas_source.clone() if atlas_source is not None else None
        for layer in results + background + ([atlas_layer] if atlas_layer else []):
            project.addMapLayer(layer, False)
        crs = results[0].crs()
        project.setCrs(crs)
        project.setTransformContext(context.transformContext())

        sheet = MapSheet(
            title=self.parameterAsString(parameters, self.TITLE, context) or "Map",
            paper=self.parameterAsEnumString(parameters, self.PAPER, context) or "A4",
            orientation=self.parameterAsEnumString(parameters, self.ORIENTATION, context) or ORIENTATIONS[0],
            crs=crs, extent=self.map_extent(parameters, context, results, crs),
            scale=self.parameterAsDouble(parameters, self.SCALE, context) or None,
            grid=self.parameterAsEnumString(parameters, self.GRID, context) or GRIDS[0],
            overview=self.parameterAsBoolean(parameters, self.OVERVIEW, context),
            notes=self.notes(parameters, context, layers, crs),
            legend_titles={layer_id: LEGEND_TITLES[task] for layer_id, task in
                           ((layer.id(), provenance(layer).get(PROVENANCE_TASK)) for layer in results)
                           if task in LEGEND_TITLES})
        if atlas_layer is not None and atlas_layer.featureCount() == 0:
            raise QgsProcessingException(f"The atlas layer '{atlas_layer.name()}' has no feature: give a polygon "
                                         "layer with one polygon per page, or leave the atlas empty.")
        layout = build_layout(project, sheet, results, background, atlas_layer)
        if not layout.legend_fits:
            feedback.reportError(
                f"The legend does not fit its panel on an {sheet.paper} {sheet.orientation} sheet"
                + (" beside the overview" if sheet.overview else "") + ": it runs past the panel, over the "
                "footer. For this many classes choose A3, landscape" + (" or no overview" if sheet.overview else "")
                + ".", fatalError=False)
        feedback.setProgress(10)

        georeference = self.parameterAsBoolean(parameters, self.GEOPDF, context)
        if georeference and not geopdf_available():
            feedback.reportError("GeoPDF is not available: this GDAL's PDF driver cannot write it (GDAL 3 with "
                                 "PDF creation support is needed). A plain PDF is written.", fatalError=False)
            georeference = False
        # Every file of the map (PDF, per-sheet GeoPDFs, PNG pages) is written under a hidden name and put in
        # place together once all are complete: a failure or cancel leaves the earlier map as it was.
        failure = None
        try:
            with engine_errors(), PendingFiles() as transaction:
                pages = self.export_pdf(layout, pdf_path, georeference,
                                        self.parameterAsInt(parameters, self.DPI, context), feedback, transaction)
                outputs = {self.OUTPUT: pdf_path, self.PAGES: pages, self.GEOREFERENCED: georeference}
                if png_path:
                    outputs[self.OUTPUT_PNG] = self.export_png(layout, png_path, feedback, transaction)
        except QgsProcessingException as error:
            failure = str(error)
        if failure is not None:
            # Raised afresh, without the export's frames: they hold the layout, and a layout that outlives its
            # project (as the caller keeps the exception) crashes QGIS when it is finally deleted.
            del layout, project
            raise QgsProcessingException(failure)
        feedback.pushInfo(f"{pages} page(s) of {sheet.paper} {sheet.orientation} written to {pdf_path}"
                          + (" (GeoPDF: georeferenced)" if georeference and pages == 1 else ""))
        return outputs

    def styled_copy(self, layer: QgsMapLayer, context, feedback) -> QgsMapLayer:
        """A copy of ``layer`` for the layout's own project, drawn as the user sees it: its style in the project,
        else its saved default style, else (class rasters) its legend's colours."""
        copy = layer.clone()
        in_project = context.project() is not None and context.project().mapLayer(layer.id()) is not None
        styled = in_project
        if not in_project:
            styled = copy.loadDefaultStyle()[1]
            # A layer of a GeoPackage opened by path is named after the file: name it after its table instead.
            path, table = ogr_source_parts(layer.source())
            if table and copy.name() == Path(path).stem:
                copy.setName(table)
        # Unstyled, a raster with a colour table gets QGIS's palette of all its entries (256 numbered rows, off
        # the page): a class raster takes its own legend instead, only the classes present.
        if copy.type() == LAYER_RASTER and copy.providerType() == "gdal" and \
                not (styled and isinstance(copy.renderer(), QgsPalettedRasterRenderer)):
            with contextlib.suppress(RuntimeError):
                dataset = gdal.Open(copy.source())
                if dataset.RasterCount == 1 and dataset.GetRasterBand(1).DataType in INTEGER_TYPES:
                    legend = read_legend(dataset)
                    if legend is not None:
                        present = codes_present(dataset)
                        copy.setRenderer(styling.class_renderer(
                            copy, [entry for entry in legend.entries if entry.code in present]))
        if not copy.isValid():
            raise QgsProcessingException(f"The layer '{layer.name()}' cannot be drawn (it is not valid).")
        return copy

    def map_extent(self, parameters, context, layers, crs) -> QgsRectangle:
        if parameters.get(self.EXTENT):
            return self.parameterAsExtent(parameters, self.EXTENT, context, crs)
        extent = QgsRectangle()
        extent.setMinimal()
        for layer in layers:
            transform = QgsCoordinateTransform(layer.crs(), crs, context.transformContext())
            extent.combineExtentWith(transform.transformBoundingBox(layer.extent()))
        return extent

    def notes(self, parameters, context, layers, crs) -> list[str]:
        """Footer lines: the source, the model that made each result (from the raster metadata), the CRS and date."""
        source = self.parameterAsString(parameters, self.SOURCE, context)
        lines = [f"Source: {source}" if source else "Source: " + ", ".join(layer.name() for layer in layers)]
        models = []
        for layer in layers:
            metadata = provenance(layer)
            if PROVENANCE_MODEL in metadata:
                note = f"{metadata[PROVENANCE_MODEL]}"
                if metadata.get(PROVENANCE_TRAINED_ON):
                    note += f", trained on {shortened(metadata[PROVENANCE_TRAINED_ON], TRAINED_ON_CHARACTERS)}"
                if note not in models:
                    models.append(note)
        if models:
            lines.append("Model: " + "; ".join(models) + ". Check the map in the field before relying on it.")
        today = QDate.currentDate().toString(Qt.DateFormat.ISODate)
        lines.append(f"Map CRS: {crs.authid()} ({crs.description()}). Produced {today} "
                     f"with the SAR LULC plugin for QGIS {Qgis.version().split('-')[0]}.")
        return lines

    def export_pdf(self, layout, pdf_path, georeference, dpi, feedback, transaction: PendingFiles) -> int:
        """The PDF (all pages), and with an atlas and GeoPDF one georeferenced PDF per sheet beside it: QGIS 3.22
        georeferences single-page exports only. Returns the page count."""
        settings = QgsLayoutExporter.PdfExportSettings()
        settings.dpi = dpi
        settings.writeGeoPdf = georeference
        settings.includeGeoPdfFeatures = False
        settings.textRenderFormat = Qgis.TextRenderFormat.AlwaysText  # searchable text
        atlas = layout.atlas()
        if not atlas.enabled():
            self.write_pdf(lambda path: (QgsLayoutExporter(layout).exportToPdf(path, settings), ""), pdf_path,
                           feedback, transaction)
            return layout.pageCollection().pageCount()
        self.write_pdf(lambda path: QgsLayoutExporter.exportToPdf(atlas, path, settings, feedback), pdf_path,
                       feedback, transaction)
        pages = atlas.count()
        if georeference:
            exporter = QgsLayoutExporter(layout)
            sheets = []
            with atlas_rendering(atlas):
                for page in range(pages):
                    atlas.seekTo(page)
                    sheet = Path(pdf_path).with_name(f"{Path(pdf_path).stem}_sheet_{page + 1}.pdf")
                    self.write_pdf(lambda path: (exporter.exportToPdf(path, settings), ""), sheet, feedback,
                                   transaction)
                    sheets.append(sheet.name)
                    feedback.setProgress(40 + 40 * (page + 1) / pages)
            feedback.pushInfo(f"QGIS georeferences single-page PDFs only: one GeoPDF per sheet for field apps: "
                              f"{', '.join(sheets)}")
        return pages

    @staticmethod
    def write_pdf(export, pdf_path, feedback, transaction: PendingFiles) -> None:
        """Run ``export(path)`` into the transaction's hidden file for ``pdf_path``."""
        result, error = export(str(transaction.new(pdf_path)))
        if result != QgsLayoutExporter.ExportResult.Success:
            if feedback.isCanceled():
                raise cancelled("no map was written")
            raise QgsProcessingException(f"The PDF could not be written to '{pdf_path}' (QGIS layout export error "
                                         f"{int(result)}{': ' + error if error else ''}). Check the folder and the "
                                         "free disk space.")

    def export_png(self, layout, png_path, feedback, transaction: PendingFiles) -> str:
        """The page (each atlas page: name.png, name_2.png, ...) as PNG at 150 dpi, into the transaction."""
        atlas = layout.atlas()
        exporter = QgsLayoutExporter(layout)
        with atlas_rendering(atlas) if atlas.enabled() else contextlib.nullcontext():
            for page in range(atlas.count() if atlas.enabled() else 1):
                if atlas.enabled():
                    atlas.seekTo(page)
                path = Path(png_path) if page == 0 else Path(png_path).with_name(
                    f"{Path(png_path).stem}_{page + 1}{Path(png_path).suffix}")
                image = exporter.renderPageToImage(0, QSize(), 150)
                if image.isNull() or not image.save(str(transaction.new(path)), "PNG"):
                    raise QgsProcessingException(f"The PNG '{path}' could not be written. Check the folder.")
                if feedback.isCanceled():
                    raise cancelled("no map was written")
        feedback.setProgress(100)
        return str(png_path)
