"""The "Models" toolbox group: a model trained or fine-tuned for the user's area."""

TOOLBOX_GROUP = "Models"
