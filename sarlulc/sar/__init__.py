"""SAR input: units (ALOS-2 DN, linear power, dB, relative brightness) and calibration, decibels, speckle
filters (numpy + GDAL, no QGIS)."""
