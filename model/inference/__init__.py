"""Streaming tiled inference of SAR LULC ONNX models over GeoTIFFs (numpy, GDAL, ONNX Runtime only)."""
