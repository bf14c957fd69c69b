"""The "Segmentation" toolbox group: land cover and water mapped from SAR backscatter by a model (one scene,
or many tiles in one run)."""

TOOLBOX_GROUP = "Segmentation"
