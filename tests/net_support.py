"""Shared helpers of the tests of sarlulc/training: a small network config and GeoTIFF training pairs."""

import numpy as np
import torch
from osgeo import gdal, osr

from sarlulc.networks.configs import EncoderConfig, NetConfig
from factories import write_sar_raster

torch.set_num_threads(1)  # the test machine is shared: one core for torch


def mini_config(**overrides) -> NetConfig:
    """The tiny-cpu architecture shrunk further (window 4, 16 channels) so tests run in seconds."""
    fields = dict(encoder=EncoderConfig(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=4,
                                        drop_path=0.0),
                  decoder_channels=16, hr_channels=8, num_classes=9)
    fields.update(overrides)
    return NetConfig(**fields)


def codes_from_db(db: np.ndarray) -> np.ndarray:
    """A learnable label: water (1) below -18 dB, cropland (4) below -9 dB, broadleaf forest (6) above."""
    return np.select([db < -18.0, db < -9.0], [1, 4], 6).astype(np.uint8)


def write_pair(folder, name: str, size: int, seed: int) -> tuple[str, str]:
    """<name>_sar.tif (dB, nodata -9999 in a corner) and <name>_label.tif (codes, 0 there too)."""
    sar = write_sar_raster(folder / f"{name}_sar.tif", size, size, seed=seed, nodata_box=(0, 0, 10, 10))
    dataset = gdal.Open(sar)
    db = dataset.GetRasterBand(1).ReadAsArray()
    codes = np.where(db == -9999.0, 0, codes_from_db(db)).astype(np.uint8)
    label = str(folder / f"{name}_label.tif")
    out = gdal.GetDriverByName("GTiff").Create(label, size, size, 1, gdal.GDT_Byte)
    out.SetGeoTransform(dataset.GetGeoTransform())
    srs = osr.SpatialReference()
    srs.ImportFromWkt(dataset.GetProjection())
    out.SetSpatialRef(srs)
    out.GetRasterBand(1).SetNoDataValue(0)
    out.GetRasterBand(1).WriteArray(codes)
    out = None
    return sar, label
