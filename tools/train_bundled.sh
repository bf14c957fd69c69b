#!/usr/bin/env bash
# Reproduce the bundled models from scratch: simulate ALOS-2-like scenes of the simulator's fixed
# world (--variability none, as when they were trained; train / val / held-out test seeds never overlap), pretrain the encoder with SAR-W-MixMAE on the training scenes
# (labels unused), fine-tune the LULC and water models (tiny-cpu config, both refinements,
# alpha-tempered focal+dice), export them to ONNX with the plugin's contract, and score them
# end to end through the plugin's inference engine on the held-out set.
# Knobs (environment): PRETRAIN_EPOCHS, EPOCHS_LULC, EPOCHS_WATER, SAMPLES, CROP, THREADS, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bundled}
DATA=${DATA:-data/sim}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-5}
EPOCHS_LULC=${EPOCHS_LULC:-12}
EPOCHS_WATER=${EPOCHS_WATER:-6}
SAMPLES=${SAMPLES:-2000}
CROP=${CROP:-128}
THREADS=${THREADS:-1}
TRAINED_ON="simulated ALOS-2-like HH scenes (model/simulate, training seed 1), not real ALOS-2 data"

simulate() {  # name seed count
    [ -f "$DATA/$1/manifest.json" ] || $PY -m model.simulate --out "$DATA/$1" --count "$3" --size 512 --seed "$2" --holes \
        --variability none
}
simulate train 1 48
simulate val 2 10
simulate test 3 12

train() {  # task epochs
    $PY -m model.net.train --task "$1" --train "$DATA/train" --val "$DATA/val" --out "$OUT/$1" \
        --config tiny-cpu --epochs "$2" --samples-per-epoch "$SAMPLES" --crop-size "$CROP" \
        --batch-size 8 --lr 6e-4 --alpha 0.5 --threads "$THREADS" --workers 1 --seed 0 \
        --pretrained-encoder "$OUT/pretrain/encoder.pt" > "$OUT/$1.train.log" 2>&1
}
mkdir -p "$OUT"
start=$(date +%s)
[ -f "$OUT/pretrain/encoder.pt" ] || $PY -m model.net.pretrain --data "$DATA/train" --out "$OUT/pretrain" \
    --config tiny-cpu --epochs "$PRETRAIN_EPOCHS" --samples-per-epoch 1000 --crop-size "$CROP" --batch-size 8 \
    --threads 2 --workers 1 --seed 0 > "$OUT/pretrain.log" 2>&1
train lulc "$EPOCHS_LULC" & lulc_pid=$!
train water "$EPOCHS_WATER" & water_pid=$!
wait $lulc_pid && wait $water_pid
echo "training took $(( $(date +%s) - start )) s on $(nproc) cores ($(uname -m))"

for task in lulc water; do
    $PY -m model.net.export --checkpoint "$OUT/$task/best.pt" --out "model/weights/$task.onnx" \
        --tile-size 256 --tile-overlap 64 --trained-on "$TRAINED_ON"
    $PY tools/evaluate_set.py --model "model/weights/$task.onnx" --task "$task" --data "$DATA/test" \
        --out "$OUT/$task/heldout"
done
# The classical baseline on the same held-out scenes, so the water model's gain over it is reported.
$PY tools/evaluate_set.py --method threshold --task water --data "$DATA/test" --out "$OUT/water/heldout-threshold"
