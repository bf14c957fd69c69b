"""The refined segmentation network (arXiv 2601.15705): Swin encoder, UPerNet decoder, high-resolution
injection and refine-up head, and its variants as data (configs.py). Needs torch; trained by
sarlulc/training, run by the plugin as exported ONNX."""
