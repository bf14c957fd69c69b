"""Small, real test inputs: ONNX models built with onnx.helper and georeferenced SAR GeoTIFFs.

The pixel models compute their output from each pixel alone, so any correct tiling must give
exactly the untiled result; the context model looks at a neighbourhood, so tiling shows seams
unless tile outputs are blended.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from osgeo import gdal, osr

from sarlulc.products import LULC_CLASSES, WATER_CLASSES
from sarlulc.inference.contract import ClassInfo, InputDistribution, ModelContract

gdal.UseExceptions()

# The normalisation the factory models declare; sar rasters below are in [-25, 0] dB.
NORM_CLIP = (-35.0, 5.0)
NORM_MEAN = -12.0
NORM_STD = 6.0
# What a model trained on scenes like the demo scene (median -10 dB, 1..99 % -23.5..2.8 dB) declares.
DEMO_LIKE_DISTRIBUTION = InputDistribution(scene_median_db=(-13.0, -7.0),
                                           pixel_db_percentiles=((1.0, -24.0), (50.0, -10.0), (99.0, 3.0)))
# Pixel LULC class centres in dB: class i wins where the pixel is nearest LULC_CENTRES_DB[i].
_CENTRE_SPAN_DB = (-24.0, -1.0)
_SHARPNESS = 4.0


def class_infos(classes) -> tuple[ClassInfo, ...]:
    """(code, name, colour) tuples, as in sarlulc.products, to ClassInfo."""
    return tuple(c if isinstance(c, ClassInfo) else ClassInfo(*c) for c in classes)


def lulc_centres_db(n_classes: int) -> np.ndarray:
    """The dB value each pixel-model class is centred on (class i is nearest centre i)."""
    return np.linspace(*_CENTRE_SPAN_DB, n_classes).astype(np.float32)


def expected_pixel_classes(db: np.ndarray, classes=None) -> np.ndarray:
    """The class codes the pixel LULC model gives for dB values (reference for tests)."""
    infos = class_infos(classes or LULC_CLASSES)
    centres = (lulc_centres_db(len(infos)) - NORM_MEAN) / NORM_STD
    x = (np.clip(db, *NORM_CLIP) - NORM_MEAN) / NORM_STD
    nearest = np.argmin(np.abs(x[..., None] - centres), axis=-1)
    return np.array([c.code for c in infos], dtype=np.uint8)[nearest]


def _contract(task, classes, tile_size, tile_overlap, **overrides) -> ModelContract:
    fields = dict(
        task=task, classes=class_infos(classes), output_activation="softmax" if task == "lulc" else "sigmoid",
        input_units="db", norm_clip=NORM_CLIP, norm_mean=NORM_MEAN, norm_std=NORM_STD, gsd_m=10.0,
        tile_size=tile_size, tile_overlap=tile_overlap, water_threshold=None,
        model_name=f"test {task} model", trained_on="nothing (test factory)")
    fields.update(overrides)
    return ModelContract(**fields)


def _save(path, nodes, initializers, n_out, contract_metadata: dict[str, str] | None, fixed_size=None) -> str:
    """Save a graph sar (N,1,H,W) -> scores (N,n_out,H,W) with the given metadata."""
    h, w = (fixed_size, fixed_size) if fixed_size else ("H", "W")
    graph = helper.make_graph(
        nodes, "sarlulc_test",
        [helper.make_tensor_value_info("sar", TensorProto.FLOAT, ["N", 1, h, w])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", n_out, h, w])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (contract_metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _const(name, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _pixel_lulc_nodes(source: str, n_classes: int):
    """logits_c = -k * (x - centre_c)^2 from the 1-channel tensor ``source``."""
    centres = ((lulc_centres_db(n_classes) - NORM_MEAN) / NORM_STD).reshape(1, n_classes, 1, 1)
    nodes = [helper.make_node("Sub", [source, "centres"], ["diff"]),
             helper.make_node("Mul", ["diff", "diff"], ["sq"]),
             helper.make_node("Mul", ["sq", "neg_k"], ["scores"])]
    return nodes, [_const("centres", centres), _const("neg_k", -_SHARPNESS)]


def write_pixel_lulc_model(path, tile_size=64, tile_overlap=16, classes=None, fixed_size=False,
                           **contract_overrides) -> str:
    """A LULC model whose class depends on the pixel alone (nearest of evenly spaced dB centres).
    ``fixed_size``: True fixes the graph's input to the contract's tile size, a number to that size."""
    contract = _contract("lulc", classes or LULC_CLASSES, tile_size, tile_overlap, **contract_overrides)
    nodes, inits = _pixel_lulc_nodes("sar", len(contract.classes))
    graph_size = tile_size if fixed_size is True else fixed_size or None
    return _save(path, nodes, inits, len(contract.classes), contract.to_metadata(), graph_size)


def write_pixel_water_model(path, tile_size=64, tile_overlap=16, threshold=0.5, water_below_db=-18.0,
                            **contract_overrides) -> str:
    """A water model: logit = k * (t_norm - x_norm), so pixels darker than ``water_below_db`` are water."""
    overrides = dict(water_threshold=threshold, classes=WATER_CLASSES)
    overrides.update(contract_overrides)
    contract = _contract("water", overrides.pop("classes"), tile_size, tile_overlap, **overrides)
    t_norm = (water_below_db - NORM_MEAN) / NORM_STD
    nodes = [helper.make_node("Sub", ["t", "sar"], ["margin"]),
             helper.make_node("Mul", ["margin", "k"], ["scores"])]
    return _save(path, nodes, [_const("t", t_norm), _const("k", _SHARPNESS)], 1, contract.to_metadata())


def write_echo_water_model(path, tile_size=64, tile_overlap=16, **contract_overrides) -> str:
    """A water model whose score is its input: the engine's water probability is then sigmoid(model
    input), so a test reads back exactly what the engine fed the model (logit of the probability)."""
    overrides = dict(water_threshold=0.5, classes=WATER_CLASSES)
    overrides.update(contract_overrides)
    contract = _contract("water", overrides.pop("classes"), tile_size, tile_overlap, **overrides)
    return _save(path, [helper.make_node("Identity", ["sar"], ["scores"])], [], 1, contract.to_metadata())


def write_context_lulc_model(path, tile_size=64, tile_overlap=16, classes=None, kernel=9,
                             conv_layers=0, conv_channels=32, seed=0, **contract_overrides) -> str:
    """A LULC model that sees a neighbourhood: a ``kernel`` x ``kernel`` mean, then the pixel rule.

    ``conv_layers`` > 0 adds a residual stack of 3x3 convolutions (random weights, small gain) in
    front, giving the model a realistic compute cost for benchmarks.
    """
    contract = _contract("lulc", classes or LULC_CLASSES, tile_size, tile_overlap, **contract_overrides)
    rng = np.random.default_rng(seed)
    nodes, inits, source = [], [], "sar"
    if conv_layers:
        channels = [1] + [conv_channels] * conv_layers
        for i in range(conv_layers):
            weight = rng.normal(0, np.sqrt(2.0 / (9 * channels[i])), (channels[i + 1], channels[i], 3, 3))
            inits += [_const(f"w{i}", weight), _const(f"b{i}", np.zeros(channels[i + 1]))]
            nodes += [helper.make_node("Conv", [source, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                      helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
            source = f"r{i}"
        # Fold features back to one channel and add a small residual to keep the pixel rule dominant.
        inits += [_const("w_out", rng.normal(0, 0.01, (1, conv_channels, 1, 1)))]
        nodes += [helper.make_node("Conv", [source, "w_out"], ["feat"]),
                  helper.make_node("Add", ["sar", "feat"], ["mixed"])]
        source = "mixed"
    pad = kernel // 2
    nodes.append(helper.make_node("AveragePool", [source], ["smooth"], kernel_shape=[kernel, kernel],
                                  pads=[pad] * 4, strides=[1, 1], count_include_pad=0))
    pixel_nodes, pixel_inits = _pixel_lulc_nodes("smooth", len(contract.classes))
    return _save(path, nodes + pixel_nodes, inits + pixel_inits, len(contract.classes), contract.to_metadata())


def write_nan_lulc_model(path, tile_size=64, tile_overlap=16) -> str:
    """A broken LULC model (valid graph and metadata) whose scores are all NaN, as after a diverged training."""
    contract = _contract("lulc", LULC_CLASSES, tile_size, tile_overlap)
    nodes, inits = _pixel_lulc_nodes("poisoned", len(contract.classes))
    nodes.insert(0, helper.make_node("Mul", ["sar", "nan"], ["poisoned"]))
    return _save(path, nodes, inits + [_const("nan", np.nan)], len(contract.classes), contract.to_metadata())


def write_foreign_onnx(path) -> str:
    """A valid ONNX model without any SAR LULC metadata (someone else's model)."""
    return _save(path, [helper.make_node("Identity", ["sar"], ["scores"])], [], 1, None)


def sar_db_field(x0: int, y0: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Plausible HH sigma0 dB for pixels [x0, x0+width) x [y0, y0+height) of an endless scene.

    A smooth land field in about [-16, -1] dB with dark water blobs near -22 dB and a little
    speckle; a function of the pixel coordinates, so any window of a big raster is cheap to make.
    """
    rng = np.random.default_rng(seed)
    fx, fy, phase = rng.uniform(0.01, 0.05, 3), rng.uniform(0.01, 0.05, 3), rng.uniform(0, 6.3, 3)
    y, x = np.mgrid[y0:y0 + height, x0:x0 + width].astype(np.float32)
    land = sum(np.sin(fx[i] * x + phase[i]) * np.cos(fy[i] * y - phase[i]) for i in range(3))
    db = -8.5 + 2.5 * land  # about [-16, -1]
    water = np.sin(0.013 * x + phase[0]) * np.sin(0.017 * y + phase[1]) > 0.75
    db = np.where(water, -22.0, db)
    speckle = np.random.default_rng([seed, x0, y0]).normal(0.0, 0.8, db.shape)
    return np.clip(db + speckle, -25.0, 0.0).astype(np.float32)


def water_land_scene(width: int, height: int, *, water_db: float = -22.0, land_db: float = -8.0, looks: int = 4,
                     water: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sigma0 dB float32, water bool): a river and a lake (about a quarter of the scene) over land
    with a smooth +-2 dB texture, and Gamma speckle of ``looks`` looks in power, as in real SAR.
    ``water=False`` gives land only (one backscatter population)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    river = np.abs(y - height * (0.35 + 0.08 * np.sin(x / width * 2 * np.pi))) < height * 0.06
    lake = (x - 0.7 * width) ** 2 + (y - 0.72 * height) ** 2 < (0.18 * min(width, height)) ** 2
    is_water = (river | lake) if water else np.zeros((height, width), bool)
    texture = 2.0 * np.sin(x / 23.0 + 1.0) * np.cos(y / 31.0)
    mean_db = np.where(is_water, water_db, land_db + texture)
    speckle = rng.gamma(looks, 1.0 / looks, (height, width))
    return (mean_db + 10.0 * np.log10(speckle)).astype(np.float32), is_water


def write_sar_raster(path, width, height, *, epsg=32654, pixel_size=10.0, origin=(500000.0, 4000000.0),
                     nodata=-9999.0, dtype="float32", seed=0, nodata_box=None, bands=1, values=None) -> str:
    """A georeferenced GeoTIFF of HH sigma0 dB (tiled, DEFLATE), written in strips so it may be large.

    ``epsg=None`` leaves the raster without a CRS; ``nodata_box=(x0, y0, x1, y1)`` is set to ``nodata``;
    ``values`` (a (height, width) array) replaces the generated field in every band.
    """
    gdal_type = gdal.GetDataTypeByName({"float32": "Float32", "float64": "Float64", "int16": "Int16",
                                        "uint16": "UInt16", "uint8": "Byte"}[dtype])
    options = ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, bands, gdal_type, options)
    ds.SetGeoTransform((origin[0], pixel_size, 0.0, origin[1], 0.0, -pixel_size))
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetSpatialRef(srs)
    strip = max(1, (1 << 22) // max(width, 1))
    for b in range(1, bands + 1):
        band = ds.GetRasterBand(b)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        for y0 in range(0, height, strip):
            rows = min(strip, height - y0)
            if values is not None:
                block = np.asarray(values, dtype=np.float64)[y0:y0 + rows]
            else:
                block = sar_db_field(0, y0, width, rows, seed + b - 1)
            block = block.astype(dtype)
            if nodata_box is not None:
                bx0, by0, bx1, by1 = nodata_box
                lo, hi = max(by0, y0) - y0, min(by1, y0 + rows) - y0
                if hi > lo:
                    block[lo:hi, bx0:bx1] = nodata
            band.WriteArray(block, 0, y0)
    ds = None
    return str(path)


def write_changed_backscatter(source_path, path, change) -> str:
    """A copy of the dB raster at ``source_path`` whose valid pixels are ``change(db, median)``
    (e.g. a calibration offset, a contrast change around the scene median); nodata kept."""
    source = gdal.Open(str(source_path))
    band = source.GetRasterBand(1)
    db, nodata = band.ReadAsArray(), band.GetNoDataValue()
    valid = db != nodata
    copy = gdal.GetDriverByName("GTiff").CreateCopy(str(path), source)
    copy.GetRasterBand(1).WriteArray(np.where(valid, change(db, float(np.median(db[valid]))), nodata))
    copy = None
    return str(path)


def write_alos2_mosaic_tile(path, size=450, strip_rows=40, ocean_fraction=0.4, seed=0, ocean_db=-25.0) -> str:
    """A coastal JAXA ALOS-2 PALSAR-2 25 m mosaic tile as downloaded: UInt16 amplitude DN, nodata
    declared as 1, 1/4500 degree (0.8 arc-second) pixels in EPSG:4326, a strip-organised GeoTIFF
    (one row per strip, not tiled). Data only in a strip of ``strip_rows`` along the south edge,
    whose western ``ocean_fraction`` is dark open ocean (``ocean_db``, before speckle); a small DN-1
    box inside the strip (nodata within the data); everything else nodata.
    """
    step = 1.0 / 4500
    dn = np.ones((size, size), np.uint16)
    strip = slice(size - strip_rows, size)
    db = sar_db_field(0, 0, size, strip_rows, seed)
    db = np.where(db < -18, -10.0, db)  # land only; the ocean is the one dark area
    ocean = np.arange(size) < int(ocean_fraction * size)
    db[:, ocean] = ocean_db
    speckle = np.random.default_rng(seed).gamma(4.0, 0.25, db.shape)  # 4-look speckle in power
    power = 10 ** (db / 10) * speckle
    dn[strip] = np.clip(np.round(np.sqrt(power / 10 ** (-83.0 / 10))), 2, 65535).astype(np.uint16)
    dn[size - strip_rows + 5:size - strip_rows + 10, size - 30:size - 20] = 1
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 1, gdal.GDT_UInt16, ["BLOCKYSIZE=1"])
    ds.SetGeoTransform((135.0, step, 0.0, 35.0, 0.0, -step))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds.SetSpatialRef(srs)
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(1)
    band.WriteArray(dn)
    ds = None
    return str(path)


def web_mercator_point(lon: float, lat: float) -> tuple[float, float]:
    """EPSG:3857 (x, y) of a longitude/latitude, for rasters placed far from the equator."""
    wgs84, mercator = osr.SpatialReference(), osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    mercator.ImportFromEPSG(3857)
    for srs in (wgs84, mercator):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    x, y, _ = osr.CoordinateTransformation(wgs84, mercator).TransformPoint(lon, lat)
    return x, y


def write_class_raster(path, codes, *, epsg=32654, geotransform=(500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0),
                       nodata=0, legend=LULC_CLASSES, dtype="uint8") -> str:
    """A class raster like the plugin writes (sarlulc.rasters.writer: colour table, category names,
    attribute table), with the given (height, width) codes; ``legend=None`` leaves it without one."""
    from sarlulc.rasters.writer import OutputRaster, all_or_none

    codes = np.asarray(codes)
    gdal_type = {"uint8": gdal.GDT_Byte, "uint16": gdal.GDT_UInt16, "float32": gdal.GDT_Float32}[dtype]
    like = gdal.GetDriverByName("MEM").Create("", codes.shape[1], codes.shape[0], 1, gdal_type)
    like.SetGeoTransform(geotransform)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    like.SetSpatialRef(srs)
    output = OutputRaster(path, like, gdal_type, nodata, "classes")
    with all_or_none([output]):
        output.band.WriteArray(codes.astype(dtype))
        if legend:
            output.set_legend([tuple(entry) for entry in legend])
    return str(path)


def record_band_reads(monkeypatch) -> list:
    """The windows the engine reads from any raster band (BandReader.read), in order."""
    from sarlulc.rasters.reading import BandReader

    windows = []
    original = BandReader.read

    def recording_read(self, window):
        windows.append(window)
        return original(self, window)

    monkeypatch.setattr(BandReader, "read", recording_read)
    return windows
