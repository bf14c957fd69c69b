"""SAR LULC model package.

`model.inference` is the runtime core (numpy, GDAL, ONNX Runtime: no QGIS, no torch).
`model.net` and the training tools need torch and are for training/export only.
"""
