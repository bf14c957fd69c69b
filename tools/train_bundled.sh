#!/usr/bin/env bash
# Reproduce the bundled models from scratch, from the simulator and the real scenes of ../shared/data.
# Both models read calibrated backscatter by its absolute level (norm_mode fixed) with a random
# calibration error of +-1.5 dB per crop; 8-bit stretches (ETCI) are read as relative brightness,
# anchored on their land level as the plugin anchors any 8-bit input (model/README.md).
#  - Land cover: simulated ALOS-2-like HH scenes (per-scene variability; train / val / test seeds never
#    overlap; sarlulc/simulate/README.md) and the real AIRSAR L-band San Francisco scene, split in space:
#    rows 0-439 train, rows 456-583 validate, rows 600-899 (the southern third) are the held-out test.
#  - Water: simulated scenes, the real ETCI 2021 VV scenes Bangladesh and Nebraska (chips whose labelled
#    water the SAR does not show are screened, sarlulc/training/sampling.py) and the calibrated Sen1Floods11 chips
#    India, Bolivia and Ghana_53713; the epoch and the default threshold are chosen on the real
#    validation chip USA_905409; held out of everything: ETCI North Alabama and the Sen1Floods11 chips
#    Nigeria, Mekong, Spain and Ghana_97059.
#  - Export to ONNX with the plugin's contract into model/weights/, then held-out scores end to end through
#    the plugin's engine: the real test scenes, the simulated test scenes (as they are and +-1.5 dB off),
#    and Water Detect's threshold method on the same scenes.
# Knobs (environment): EPOCHS_LULC, EPOCHS_WATER, SAMPLES, CROP, OUT, DATA, SHARED, WEIGHTS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bundled}
DATA=${DATA:-data/varied}
SHARED=${SHARED:-../shared/data}
WEIGHTS=${WEIGHTS:-model/weights}
EPOCHS_LULC=${EPOCHS_LULC:-30}
EPOCHS_WATER=${EPOCHS_WATER:-14}
SAMPLES=${SAMPLES:-1600}
CROP=${CROP:-128}
TRAINED_ON_LULC="simulated ALOS-2-like HH scenes with per-scene variability (sarlulc/simulate, training seed 1) and the real AIRSAR L-band HH scene of San Francisco, rows 0-439 (PolSF labels, NASA-JPL data), a quarter of the crops; not real ALOS-2 data"
TRAINED_ON_WATER="real Sentinel-1 scenes: ETCI 2021 Bangladesh and Nebraska (8-bit VV, NASA IMPACT competition data) and the Sen1Floods11 hand-labelled chips India_900498, Bolivia_312675, Ghana_53713 (calibrated VV); simulated ALOS-2-like HH scenes (sarlulc/simulate, seed 1)"

for file in etci2021/README.md sen1floods11/README.md sf_airsar/README.md; do
    if [ ! -f "$SHARED/$file" ]; then
        echo "train-bundled: $SHARED/$file is missing (set SHARED=folder holding etci2021, sen1floods11, sf_airsar)." >&2
        exit 1
    fi
done
simulate() {  # name seed count
    [ -f "$DATA/sim/$1/manifest.json" ] || $PY -m sarlulc.simulate --out "$DATA/sim/$1" --count "$3" --size 512 --seed "$2" --holes
}
simulate train 1 48
simulate val 2 10
simulate test 3 12

# List files that read the real data in place (profiles of sarlulc/training/sources.py).
lists="$DATA/real"
mkdir -p "$lists"
shared=$(cd "$SHARED" && pwd)
etci() { for scene in "$@"; do echo "$shared/etci2021/${scene}_vv.tif $shared/etci2021/${scene}_label.tif profile=etci2021"; done; }
s1f() { for chip in "$@"; do echo "$shared/sen1floods11/${chip}_S1Hand.tif $shared/sen1floods11/${chip}_LabelHand.tif profile=sen1floods11"; done; }
etci bangladesh_20170314t115609 nebraska_20170213t002121 > "$lists/etci_train.txt"
etci northal_20190302t234651 > "$lists/etci_test.txt"
s1f India_900498 Bolivia_312675 Ghana_53713 > "$lists/s1f_train.txt"
s1f USA_905409 > "$lists/s1f_val.txt"
s1f Nigeria_812045 Mekong_333434 Spain_6860600 Ghana_97059 > "$lists/s1f_test.txt"
for chip in Nigeria_812045 Mekong_333434 Spain_6860600 Ghana_97059; do s1f "$chip" > "$lists/s1f_test_$chip.txt"; done
sf_part() {  # name first-row rows: a VRT window of the San Francisco scene and its labels
    gdal_translate -q -of VRT -srcwin 0 "$2" 1024 "$3" "$shared/sf_airsar/sf_airsar_hh_hv_vv_db.tif" "$lists/sf_$1_sar.vrt"
    gdal_translate -q -of VRT -srcwin 0 "$2" 1024 "$3" "$shared/sf_airsar/sf_airsar_label.tif" "$lists/sf_$1_label.vrt"
    echo "sf_$1_sar.vrt sf_$1_label.vrt profile=sf_airsar" > "$lists/sf_$1.txt"
}
sf_part train 0 440
sf_part val 456 128
sf_part test 600 300

mkdir -p "$OUT"
start=$(date +%s)
train() {  # task epochs val-every val-tiles val-sources extra-flags train-sources...
    local task=$1 epochs=$2 every=$3 tiles=$4 val=$5 extra=$6
    shift 6
    $PY -m sarlulc.training.train --task "$task" --train "$@" --val $val --out "$OUT/$task" --config tiny-cpu \
        --crop-size "$CROP" --batch-size 8 --threads 1 --workers 0 --seed 0 --epochs "$epochs" \
        --samples-per-epoch "$SAMPLES" --lr 6e-4 --alpha 0.5 --norm-mode fixed --level-jitter 1.5 --gain-jitter 0.1 \
        --balanced-share 0.3 --val-every "$every" --val-max-tiles "$tiles" $extra > "$OUT/$task.train.log" 2>&1
}
train water "$EPOCHS_WATER" 1 200 "$lists/s1f_val.txt" "" "$DATA/sim/train" "$lists/etci_train.txt" "$lists/s1f_train.txt" &
water_pid=$!
train lulc "$EPOCHS_LULC" 2 120 "$DATA/sim/val $lists/sf_val.txt" "--profile-share sf_airsar=0.25" "$DATA/sim/train" "$lists/sf_train.txt" &
lulc_pid=$!
wait $water_pid && wait $lulc_pid
echo "training took $(( $(date +%s) - start )) s on $(nproc) cores ($(uname -m))"

$PY -m sarlulc.training.export --checkpoint "$OUT/lulc/best.pt" --out "$WEIGHTS/lulc.onnx" --tile-size 256 \
    --tile-overlap 64 --trained-on "$TRAINED_ON_LULC"
# The water model's default probability thresholds (tools/choose_water_threshold.py), never on a test scene:
# for calibrated inputs the best water IoU on the real validation chip, for relative (8-bit) inputs on the
# screened chips of the ETCI training scene Nebraska (its probabilities on anchored 8-bit input sit lower).
$PY -m sarlulc.training.export --checkpoint "$OUT/water/best.pt" --out "$OUT/water/model.onnx" --tile-size 256 \
    --tile-overlap 64 --trained-on "$TRAINED_ON_WATER"
etci nebraska_20170213t002121 > "$lists/etci_threshold.txt"
threshold=$($PY tools/choose_water_threshold.py --model "$OUT/water/model.onnx" --data "$lists/s1f_val.txt" \
    --out "$OUT/water/threshold.json" | tail -n 1)
relative=$($PY tools/choose_water_threshold.py --model "$OUT/water/model.onnx" --data "$lists/etci_threshold.txt" \
    --out "$OUT/water/threshold_relative.json" | tail -n 1)
$PY -m sarlulc.training.export --checkpoint "$OUT/water/best.pt" --out "$WEIGHTS/water.onnx" --tile-size 256 \
    --tile-overlap 64 --trained-on "$TRAINED_ON_WATER" --water-threshold "$threshold" \
    --water-threshold-relative "$relative"

# Held-out scores: simulated test scenes (as they are and with a +-1.5 dB calibration error), then the
# real test scenes, each for the model and the threshold method (water) on the same scenes.
for task in lulc water; do
    for shift in 0 1.5 -1.5; do
        $PY tools/evaluate_set.py --model "$WEIGHTS/$task.onnx" --task "$task" --data "$DATA/sim/test" \
            --shift-db "$shift" --out "$OUT/$task/test_sim_shift$shift"
    done
done
$PY tools/evaluate_set.py --model "$WEIGHTS/lulc.onnx" --task lulc --groups sf4 --data "$lists/sf_test.txt" \
    --out "$OUT/lulc/test_sf"
for set in etci_test s1f_test s1f_test_Nigeria_812045 s1f_test_Mekong_333434 s1f_test_Spain_6860600 s1f_test_Ghana_97059; do
    for method in model threshold otsu; do
        $PY tools/evaluate_set.py --method "$method" --model "$WEIGHTS/water.onnx" --task water \
            --data "$lists/$set.txt" --out "$OUT/water/test_${set}_$method"
    done
done
$PY tools/evaluate_set.py --method threshold --task water --data "$DATA/sim/test" --out "$OUT/water/test_sim_threshold"
