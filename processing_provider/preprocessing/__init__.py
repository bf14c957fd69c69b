"""The "Preprocessing" toolbox group: SAR rasters made ready for the other algorithms and tools."""

TOOLBOX_GROUP = "Preprocessing"
