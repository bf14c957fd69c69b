"""The help texts Segment, Water Detect and Segment Tiles share (HTML for the Processing help panel), and
``help_text``, which puts one algorithm's help together: what a user reads first, then the details."""

from ..sarlulc.rasters.output_checks import format_list
from .parameters import BUNDLED_TILE_SIZE

INPUT_HELP = (
    "<h3>Input</h3><p>A georeferenced single-polarisation L-band SAR raster of HH backscatter, "
    "terrain-corrected, like ALOS-2 PALSAR-2 mosaic tiles and L2.1 products or sigma0/gamma0 "
    "exported by SNAP. <b>Band</b>: the HH band of a multi-band raster (the log names the band "
    "used; the models warn on a band named HV or VH, cross-polarised). The raster needs a CRS; it "
    "is only read, never modified.</p>"
    "<p><b>Map only this extent</b> (optional; the dialog offers the map canvas's, a layer's or one "
    "drawn): only the raster's pixels within it are read and mapped, and the outputs cover that "
    "window. <b>Map only inside polygons</b> (optional; any CRS, <i>selected features only</i> "
    "honoured): the same for the polygons' bounding box, and pixels outside the polygons are nodata. "
    "Given both, the run maps their intersection. The model sees no context beyond the window, so "
    "classes within one tile of its edge may differ slightly from those of a run over the whole raster.</p>"
    "<p><b>Input units</b>: <i>auto</i> tells ALOS-2 amplitude DN (16-bit integers), linear power, "
    "dB and 8-bit stretches apart from the data type, a decimated read of the whole raster and the "
    "band's description, and writes its decision and reason to the log; when it cannot tell, the run "
    "stops and asks you to set them. Units the values contradict are refused, and so are RGB "
    "pictures, class maps and complex (SLC) bands. A band's GDAL scale/offset is applied. "
    "Calibrated units (DN, linear power, dB) are read by their <b>absolute level</b>: -18 dB of HH "
    "over a whole tile is water. <i>Relative brightness</i> (8-bit display stretches, chosen by auto "
    "for 8-bit bands) has no level: only its contrasts are used, its land level is anchored, and a "
    "scene of one surface (all water, all forest) cannot be recognised from it; use the calibrated "
    "product where you have it. "
    "<i>ALOS-2 DN</i> is calibrated on the fly: sigma0 = 10&middot;log10(DN&sup2;) + CF, with "
    "the <b>calibration factor</b> CF = -83.0 dB of PALSAR-2 (advanced); DN 0 is nodata. "
    "<i>Linear power</i> &le; 0 is nodata.</p>"
    "<p><b>Pixel size and CRS</b>: the model works on a <b>10 m</b> grid. Inputs at another pixel "
    "size on the ground (3 to 50 m), in degrees (EPSG:4326), in Web Mercator away from the equator "
    "or rotated are read through a resampled view on a 10 m grid (the raster's own CRS, or the UTM "
    "zone of its centre for degrees and strongly distorting projections), averaging "
    "linear power when the input is finer and interpolating when it is coarser; no resampled "
    "copy is written. The results are brought back to the input's grid (nearest for classes, "
    "bilinear for probabilities), or kept on the 10 m grid with <b>Output grid</b> = model grid "
    "(advanced).</p>"
    "<p><b>Nodata</b>: the band's nodata pixels (and DN 0) are masked before anything else, so "
    "they never change their neighbours' results, and stay nodata in every output.</p>"
    "<p><b>Speckle filter</b> (optional): Lee or refined Lee over a <b>filter window</b> of 7 "
    "pixels by default (advanced; refined Lee: 5, 7, 9 or 11), applied in linear power before "
    "the model, with the context it needs so the result does not depend on the tiling (on the "
    "10 m grid when the input is resampled). The bundled models were trained on unfiltered "
    "scenes, so it is off by default.</p>"
)
OPTIONS_HELP = (
    "<h3>Options</h3><p><b>Model</b>: leave empty for the bundled model, or choose an .onnx file "
    "that carries the SAR LULC metadata (model/CONTRACT.md in the plugin folder). "
    "<b>Device</b>: auto uses CUDA when onnxruntime-gpu and an NVIDIA GPU are present, else the "
    "CPU; the log says which ran. <b>Tile size</b>, <b>tile overlap</b> (pixels), <b>tiles per "
    "batch</b> (advanced): empty uses the model's defaults (tile size and tiles per batch 0 too; "
    "overlap 0 means no overlap). Tiles per batch by default: on the CPU as many (up to 4) as keep "
    "the run near 500 MB of memory, as the model runs no faster on more; on a GPU as many as half "
    "its free memory holds (up to 64), in half precision where the first batch shows that it gives "
    "the classes full precision gives (the log says which). "
    "<b>CPU threads</b> (advanced): empty uses one per physical core; fewer leave cores to QGIS. "
    "<b>Precision</b> (advanced): auto runs fp32 on the CPU (half precision is no faster there) and, on "
    "a GPU, fp16 when it gives the first batch's pixels the class fp32 gives on 99 % of them; fp32 or "
    "fp16 forces one (fp16 needs the onnx package). "
    f"Each tile runs once; parts of the raster without valid data are neither read nor run. "
    f"The bundled models take {BUNDLED_TILE_SIZE} px "
    f"tiles only (fixed in their graph): leave the tile size empty or set {BUNDLED_TILE_SIZE}. Tiles "
    "overlap and are blended smoothly, so no seams appear at tile borders. Sizes that "
    "would not fit in the memory available are refused, naming the largest that fit.</p>"
    "<p><b>Input check</b>: before the model runs, a sample of the input spread over the whole "
    "raster (in dB, after the unit conversion) is compared with the backscatter the model was "
    "trained on (its metadata, when it declares it) and with the range it reads; the log gives "
    "both, and a <b>warning</b> says when the input is far off (for example a median 10 dB below "
    "anything the model saw: a wrong calibration factor or wrong input units). The run goes on, "
    "but such a map should not be trusted.</p>"
)
OUTPUT_FILES_HELP = (
    f"<p>The file extension picks the format of an output: {format_list()} (PNG holds the class "
    "or water raster, not the float32 scores). All outputs of a run and their .qml styles are put "
    "in place together when it ends: a failed or cancelled run leaves none, and earlier files as "
    "they were. Nothing is written in the input's folder unless an output goes there.</p>"
)
BUNDLED_MODEL_HELP = (
    "<p><b>Bundled model</b>: model/weights/{task}.onnx, a small refined segmentation network "
    "(Swin encoder, UPerNet decoder with high-resolution injection and a progressive refine-up head, "
    "3.5 M parameters) trained on {trained_on}. It reads calibrated backscatter by its absolute level, "
    "trained to hold under the calibration error of calibrated products (+-1.5 dB); a product several "
    "dB off (some airborne and third-party data) gets a warning in the log and may be mapped wrong. "
    "Its scores on held-out real and simulated scenes and its limits are in model/MODEL_CARD.md; "
    "its name is printed in the log.</p>"
)
KEY_PARAMETERS_HELP = (
    "<i>SAR raster</i>, a georeferenced HH backscatter raster (calibrated dB, linear power or ALOS-2 DN; "
    "an 8-bit picture is read as relative brightness); <i>Input units</i>, auto unless the log's decision "
    "is wrong; <i>Map only this extent / inside polygons</i> to map part of the raster."
)
BUNDLED_LIMIT_HELP = {
    "lulc": "the bundled land-cover model learnt simulated ALOS-2-like scenes and one real airborne L-band "
            "scene, not real PALSAR-2: on real data its map is indicative; check it against field data "
            "(Evaluate Against Reference) or train a model for your area.",
    "water": "water the radar does not show darker than land (wind-roughened, flooded vegetation) is missed, "
             "and radar shadow may be taken for water; an 8-bit picture gives contrasts only, so a scene of "
             "one surface (all water, all land) cannot be recognised from it.",
}
BUNDLED_TRAINING_HELP = {
    "lulc": "<b>simulated ALOS-2-like scenes</b> and one real airborne L-band scene (San Francisco), not on "
            "real PALSAR-2 acquisitions: treat its maps on real data as indicative",
    "water": "real Sentinel-1 scenes (ETCI 2021, Sen1Floods11) and <b>simulated ALOS-2-like scenes</b>: on real "
             "calibrated chips it never saw it finds more water than METHOD=threshold, on 8-bit scenes as much; "
             "water the radar does not show darker than land is missed by both",
}


def help_text(summary: str, result: str, outputs: str, task: str) -> str:
    """The algorithm's help panel: first what a user reads (what it does, the parameters that matter,
    what the result means, the bundled model's limit in one line), then the details: input, outputs,
    options and model."""
    return (f"<p>{summary}</p><p><b>Set</b>: {KEY_PARAMETERS_HELP}</p><p><b>Result</b>: {result}</p>"
            f"<p><b>Limit</b>: {BUNDLED_LIMIT_HELP[task]}</p><h3>Details</h3>{INPUT_HELP}<h3>Outputs</h3>{outputs}"
            f"{OUTPUT_FILES_HELP}{OPTIONS_HELP}"
            f"{BUNDLED_MODEL_HELP.format(task=task, trained_on=BUNDLED_TRAINING_HELP[task])}")
