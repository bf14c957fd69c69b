"""The engine: a SAR raster through a SAR LULC ONNX model (or the threshold method) to class rasters, streamed
block by block with tiled, blended inference (numpy, GDAL, ONNX Runtime only). ``engine.py`` is the entry
point, ``run.py`` the run's phases; ``python -m sarlulc.inference`` the command line."""
