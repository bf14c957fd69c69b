"""Training the networks of sarlulc/networks: data from rasters and references, the training loops
(pretraining, fine-tuning, training for a user's area), losses, and export to the plugin's ONNX contract.

Needs torch; the plugin's runtime runs the exported ONNX file instead. Entry points:
``python -m sarlulc.training.pretrain|train|finetune|export|published|remap`` (see model/README.md).
"""
