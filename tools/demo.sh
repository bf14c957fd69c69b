#!/usr/bin/env bash
# `make demo`: run SAR LULC Segment and Water Detect through qgis_process on the shipped demo
# scene, render each styled result with its legend to PNG with QGIS's print layout, then do the
# field work: class area statistics, the offline field package and the field map (PDF + PNG).
# The plugin is deployed into a QGIS profile under build/ (not the user's own profile).
#   DEMO_SCENE=path.tif   run on another HH dB scene instead of demo/demo_scene_hh_db.tif
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QGIS_PROCESS=/usr/bin/qgis_process.bin
SCENE=${DEMO_SCENE:-demo/demo_scene_hh_db.tif}
OUT=demo_output
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export QGIS_CUSTOM_CONFIG_PATH=$PWD/build/qgis-config

if [ ! -f "$SCENE" ]; then
    echo "demo: the demo scene $SCENE is missing (it ships with the repository; or set DEMO_SCENE=your_hh_db.tif)." >&2
    exit 1
fi
for task in lulc water; do
    if [ ! -f "model/weights/$task.onnx" ]; then
        echo "demo: the bundled model model/weights/$task.onnx is missing; build it with 'make train-bundled'." >&2
        exit 1
    fi
done

bash tools/deploy.sh
mkdir -p "$OUT"
rm -f "$OUT"/*.tif "$OUT"/*.qml "$OUT"/*.aux.xml "$OUT"/*.png "$OUT"/*.pdf "$OUT"/*.gpkg "$OUT"/*.qgz \
    "$OUT"/*.html "$OUT"/*.csv

echo "demo: sarlulc:segment on $SCENE"
"$QGIS_PROCESS" run sarlulc:segment -- "INPUT=$SCENE" "OUTPUT=$OUT/lulc.tif" \
    "OUTPUT_CONFIDENCE=$OUT/lulc_confidence.tif"
echo "demo: sarlulc:waterdetect on $SCENE"
"$QGIS_PROCESS" run sarlulc:waterdetect -- "INPUT=$SCENE" "OUTPUT=$OUT/water.tif" \
    "OUTPUT_PROBABILITY=$OUT/water_probability.tif"

"$PY" tools/render_map.py "$OUT/lulc.png" "$OUT/lulc.tif" --title "Land cover (SAR LULC Segment)"
"$PY" tools/render_map.py "$OUT/lulc_confidence.png" "$OUT/lulc_confidence.tif" --title "Land-cover confidence"
"$PY" tools/render_map.py "$OUT/water.png" "$OUT/water.tif" --title "Water (Water Detect)" --backdrop "$SCENE"
"$PY" tools/render_map.py "$OUT/water_probability.png" "$OUT/water_probability.tif" --title "Water probability"
echo "demo: sarlulc:areastats, sarlulc:fieldpackage and sarlulc:fieldmap on the results"
"$QGIS_PROCESS" run sarlulc:areastats -- "INPUT=$OUT/lulc.tif" "OUTPUT=$OUT/lulc_areas.csv" \
    "OUTPUT_HTML=$OUT/lulc_areas.html"
"$QGIS_PROCESS" run sarlulc:fieldpackage -- "CLASSES=$OUT/lulc.tif" "WATER=$OUT/water.tif" \
    "OUTPUT=$OUT/field_package.gpkg" "OUTPUT_PROJECT=$OUT/field_package.qgz"
"$QGIS_PROCESS" run sarlulc:fieldmap -- "LAYERS=$OUT/water.tif" \
    "LAYERS=$OUT/field_package.gpkg|layername=class_polygons" "BACKGROUND=$SCENE" \
    "TITLE=Land cover and water, SAR LULC demo scene" "OVERVIEW=true" \
    "SOURCE=Simulated ALOS-2-like HH scene ($(basename "$SCENE"))" \
    "OUTPUT=$OUT/field_map.pdf" "OUTPUT_PNG=$OUT/field_map.png"
echo "demo: outputs and maps in $OUT/:"
ls -l "$OUT"
