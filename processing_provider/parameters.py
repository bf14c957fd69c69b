"""Parameter types, choices and defaults that several algorithms share."""

from osgeo import gdal
from qgis.core import QgsProcessingParameterBand, QgsProject, QgsRasterLayer

from ..sarlulc.errors import gdal_exceptions
from ..sarlulc.sar.units import not_backscatter_reason

# The tile edge the bundled models' graphs are fixed to (tests/test_plugin_provider.py checks it).
BUNDLED_TILE_SIZE = 256
# The task a many-tile run or a training maps (option shown to users, model contract task).
TASK_CHOICES = (("land cover", "lulc"), ("water", "water"))


class BandWithDefault(QgsProcessingParameterBand):
    """A required band whose default stands in when no value is given (qgis_process, Python):
    QGIS 3.22's band parameter refuses a missing value despite its default. Required, so the dialog
    does not label it "[optional]"."""

    def clone(self):
        copy = BandWithDefault(self.name(), self.description(), self.defaultValue(), self.parentLayerParameterName())
        copy.setFlags(self.flags())
        return copy

    def checkValueIsAcceptable(self, value, context=None):  # noqa: N802 (QGIS API)
        return super().checkValueIsAcceptable(self.defaultValue() if value is None else value, context)


def whole_number_widget(parameter):
    """Show a number parameter without decimals ("5000", not "5000.000000") where whole numbers are what
    users type (areas in m², pixel counts); values with decimals are still accepted."""
    parameter.setMetadata({**parameter.metadata(), "widget_wrapper": {"decimals": 0}})
    return parameter


def latest_backscatter_layer_id() -> str | None:
    """The dialog's default input: the topmost raster of the project that may be backscatter (not a
    SAR LULC result, not a class raster), so the result a run just loaded is not proposed as input.

    None outside the QGIS desktop (qgis_process, scripts): no dialog shows there, and a missing
    INPUT must stay an error rather than silently take a layer of the project."""
    from qgis.utils import iface

    if iface is None:
        return None
    for node in QgsProject.instance().layerTreeRoot().findLayers():
        layer = node.layer()
        if isinstance(layer, QgsRasterLayer) and layer.providerType() == "gdal" and may_be_backscatter(layer.source()):
            return layer.id()
    return None


@gdal_exceptions()
def may_be_backscatter(source: str) -> bool:
    """Whether band 1 of the raster ``source`` may be SAR backscatter (GDAL reads its header only)."""
    try:
        dataset = gdal.OpenEx(source, gdal.OF_RASTER)
    except RuntimeError:
        return False
    return dataset is not None and not_backscatter_reason(dataset, 1) is None
