"""Many tiles in one run (a country of ALOS-2 mosaic tiles): seam-free, resumable, on one or many
workers. `map_tiles` is the entry point; ``python -m sarlulc.tiles`` the command line."""
