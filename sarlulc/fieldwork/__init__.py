"""Field work from a class raster: legend, class areas, generalised polygons (numpy + GDAL, no QGIS).

The Processing algorithms of the "Field work" group drive these modules; print layouts and
styled GeoPackages, which need QGIS, live in ``processing_provider``.
"""
