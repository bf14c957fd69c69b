"""Rasters in and out: grids and windows, the area of interest, resampling to the model's grid,
data coverage, and the all-or-none output transaction (numpy + GDAL, no QGIS)."""
