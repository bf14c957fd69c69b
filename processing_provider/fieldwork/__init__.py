"""The "Field work" toolbox group: a class raster turned into statistics, polygons, maps and an offline package."""

TOOLBOX_GROUP = "Field work"
