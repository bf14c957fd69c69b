"""The 9-class LULC legend shared by the simulator, training and export; the result rasters' nodata and band names.

The benchmark of arXiv 2601.15705 remaps JAXA's High-Resolution LULC map of Japan
(14 classes) to 9. The merge below is ours (documented in model/README.md); codes
start at 1 so that 0 stays free for nodata in the class raster.
"""

# (code, name, RGB colour); colours follow JAXA HRLULC conventions where one exists.
LULC_CLASSES = (
    (1, "Water", "#1f4e9c"),
    (2, "Built-up", "#e31a1c"),
    (3, "Paddy field", "#7fd6e8"),
    (4, "Cropland", "#f2d35b"),
    (5, "Grassland", "#b2df8a"),
    (6, "Broadleaf forest", "#2f8f3a"),
    (7, "Needleleaf forest", "#0b4d1e"),
    (8, "Bare land", "#b08a5a"),
    (9, "Solar panel", "#6a3d9a"),
)

# The water task's single positive class.
WATER_CLASSES = ((1, "Water", "#1f78b4"),)
NOT_WATER = (0, "Not water", "#f0f0f0")  # the water mask's other class, as maps and reports show it

# What the plugin's result rasters are: nodata values and band descriptions. The descriptions are also how
# a SAR LULC result is recognised when it is offered as input (a 0..1 confidence raster would otherwise
# pass for linear power).
LULC_NODATA, WATER_NODATA, SCORE_NODATA = 0, 255, -1.0  # class raster, water mask, confidence / probability
CLASSES_BAND, CONFIDENCE_BAND = "LULC class", "Confidence (max class probability)"
WATER_BAND, PROBABILITY_BAND = "Water mask", "Water probability"
RESULT_BAND_DESCRIPTIONS = {
    CLASSES_BAND: "a land-cover class map",
    CONFIDENCE_BAND: "a land-cover confidence raster",
    WATER_BAND: "a water mask",
    PROBABILITY_BAND: "a water probability raster",
}
