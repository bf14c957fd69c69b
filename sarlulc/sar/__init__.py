"""SAR input: units (ALOS-2 DN, linear, dB, relative) and calibration, speckle filters, and the
input's backscatter level against the model's training data (numpy + GDAL, no QGIS)."""
