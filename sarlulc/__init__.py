"""SAR LULC's library, free of QGIS: everything the Processing algorithms and the command lines call.

Imports go downwards only: ``products``, ``errors`` <- ``sar`` <- ``rasters`` <- ``inference`` <- ``fieldwork``,
``tiles``, ``calibrate``, ``evaluation``. Neither QGIS nor torch is imported by any of them; ``networks`` and
``training`` need torch and are imported only to train, fine-tune, import or export a model; ``simulate`` makes
training scenes. The table in README.md ("Where things are") says what each folder holds.
"""
