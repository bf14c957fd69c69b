"""The "Evaluation" toolbox group: how good a class map is, against a reference map or field observations."""

TOOLBOX_GROUP = "Evaluation"
