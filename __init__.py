"""SAR LULC: land-use/land-cover maps and water masks from L-band SAR, as a QGIS plugin.

QGIS calls :func:`classFactory` on load. The profile's dependencies folder (onnxruntime, see
dependencies.py) goes on sys.path here, before any module of the plugin imports onnxruntime.
"""

if __package__:
    # pytest imports this file as a bare module (no package) when the checkout's folder name is
    # not a Python name (sar-lulc): there is no plugin to set up then.
    from .dependencies import add_dependencies_to_path

    add_dependencies_to_path()


def classFactory(iface):  # noqa: N802 (name fixed by QGIS)
    """The plugin instance QGIS drives (initGui/unload; initProcessing under qgis_process)."""
    from .plugin import SarLulcPlugin

    return SarLulcPlugin(iface)
