"""The refined SAR segmentation network (arXiv 2601.15705) and its SAR-W-MixMAE pretraining.

Training/export only: needs torch. The plugin's runtime runs the exported ONNX file instead.
Entry points: ``python -m model.net.pretrain|train|export`` (see model/README.md).
"""
