#!/usr/bin/env bash
# Reproduce the bundled models from scratch, from the simulator and the real scenes of ../shared/data:
#  - simulated ALOS-2-like HH scenes with per-scene variability (train / val / held-out test seeds
#    never overlap; model/simulate/README.md), and the real ETCI 2021 Sentinel-1 VV scenes read in
#    place: Bangladesh and Nebraska train the water model, North Alabama is held out of everything;
#  - fine-tuning of the LULC model (simulated labels) and the water model (simulated + ETCI labels;
#    ETCI chips whose labelled water the SAR does not show are left out, model/net/data.py),
#    both normalised per scene (norm_mode = scene-land: the median of the raster's brighter
#    population, its land, removed once before tiling), with random calibration jitter and 30 % of
#    the crops centred on a class drawn uniformly (--balanced-share); the epoch with the best score
#    on the simulated validation scenes is kept;
#  - export to ONNX with the plugin's contract into model/weights/ (the water model's default
#    threshold chosen on the real training scenes), then held-out scores end to end through the
#    plugin's engine: simulated test scenes as they are and shifted by +-4 dB, the held-out ETCI
#    scene, and Water Detect's threshold baseline on the same scenes.
# Knobs (environment): EPOCHS_LULC, EPOCHS_WATER, SAMPLES, CROP, OUT, DATA, ETCI, WEIGHTS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bundled}
DATA=${DATA:-data/varied}
ETCI=${ETCI:-../shared/data/etci2021}
WEIGHTS=${WEIGHTS:-model/weights}
EPOCHS_LULC=${EPOCHS_LULC:-18}
EPOCHS_WATER=${EPOCHS_WATER:-14}
SAMPLES=${SAMPLES:-1600}
CROP=${CROP:-128}
TRAINED_ON_LULC="simulated ALOS-2-like HH scenes with per-scene variability (model/simulate, training seed 1), not real ALOS-2 data"
TRAINED_ON_WATER="real Sentinel-1 VV scenes of ETCI 2021 (Bangladesh, Nebraska; research data of the ETCI 2021 competition, NASA IMPACT) and simulated ALOS-2-like HH scenes with per-scene variability (model/simulate, seed 1)"

if [ ! -f "$ETCI/README.md" ]; then
    echo "train-bundled: the ETCI 2021 scenes are missing at $ETCI (set ETCI=folder)." >&2
    exit 1
fi
simulate() {  # name seed count
    [ -f "$DATA/sim/$1/manifest.json" ] || $PY -m model.simulate --out "$DATA/sim/$1" --count "$3" --size 512 --seed "$2" --holes
}
simulate train 1 48
simulate val 2 10
simulate test 3 12
# List files that read the ETCI scenes in place (profile etci2021: 8-bit VV through a nominal dB stretch,
# water labels; see model/net/data.py).
mkdir -p "$DATA/etci"
etci=$(cd "$ETCI" && pwd)
pair() { echo "$etci/$1_vv.tif $etci/$1_label.tif profile=etci2021"; }
{ pair bangladesh_20170314t115609; pair nebraska_20170213t002121; } > "$DATA/etci/train.txt"
pair northal_20190302t234651 > "$DATA/etci/heldout.txt"

mkdir -p "$OUT"
start=$(date +%s)
train() {  # task epochs threads val-every val-tiles train-sources...
    local task=$1 epochs=$2 threads=$3 every=$4 tiles=$5
    shift 5
    $PY -m model.net.train --task "$task" --train "$@" --val "$DATA/sim/val" --out "$OUT/$task" --config tiny-cpu \
        --crop-size "$CROP" --batch-size 8 --threads "$threads" --workers 0 --seed 0 --epochs "$epochs" \
        --samples-per-epoch "$SAMPLES" --lr 6e-4 --alpha 0.5 --norm-mode scene-land --level-jitter 3 --gain-jitter 0.15 \
        --balanced-share 0.3 --val-every "$every" --val-max-tiles "$tiles" > "$OUT/$task.train.log" 2>&1
}
train water "$EPOCHS_WATER" 1 2 60 "$DATA/sim/train" "$DATA/etci/train.txt" & water_pid=$!
train lulc "$EPOCHS_LULC" 1 3 80 "$DATA/sim/train" & lulc_pid=$!
wait $water_pid && wait $lulc_pid
echo "training took $(( $(date +%s) - start )) s on $(nproc) cores ($(uname -m))"

$PY -m model.net.export --checkpoint "$OUT/lulc/best.pt" --out "$WEIGHTS/lulc.onnx" --tile-size 256 \
    --tile-overlap 64 --trained-on "$TRAINED_ON_LULC"
# The water model's default probability threshold: the best water IoU on the real training scenes'
# screened chips (tools/choose_water_threshold.py), never on the held-out scene.
$PY -m model.net.export --checkpoint "$OUT/water/best.pt" --out "$OUT/water/model.onnx" --tile-size 256 \
    --tile-overlap 64 --trained-on "$TRAINED_ON_WATER"
threshold=$($PY tools/choose_water_threshold.py --model "$OUT/water/model.onnx" --data "$DATA/etci/train.txt" \
    --out "$OUT/water/threshold.json" | tail -n 1)
$PY -m model.net.export --checkpoint "$OUT/water/best.pt" --out "$WEIGHTS/water.onnx" --tile-size 256 \
    --tile-overlap 64 --trained-on "$TRAINED_ON_WATER" --water-threshold "$threshold"
for task in lulc water; do
    for shift in 0 4 -4; do
        $PY tools/evaluate_set.py --model "$WEIGHTS/$task.onnx" --task "$task" --data "$DATA/sim/test" \
            --shift-db "$shift" --out "$OUT/$task/heldout_sim_shift$shift"
    done
done
$PY tools/evaluate_set.py --model "$WEIGHTS/water.onnx" --task water --data "$DATA/etci/heldout.txt" \
    --out "$OUT/water/heldout_etci"
# The classical baseline on the same held-out scenes, so the water model's gain over it is reported.
$PY tools/evaluate_set.py --method threshold --task water --data "$DATA/sim/test" --out "$OUT/water/threshold_sim"
$PY tools/evaluate_set.py --method threshold --task water --data "$DATA/etci/heldout.txt" \
    --out "$OUT/water/threshold_etci"
