#!/usr/bin/env bash
# Leave-one-clip-out fine-tunes of a base checkpoint, exported to $R/$NAME/loo_<clip>.onnx.
#   bash training/motion/ft_loo.sh BASE_CKPT NAME STEPS [extra train.py args...]
set -euo pipefail
BASE=$1; NAME=$2; STEPS=$3; shift 3
R=training/runs
CLIPS="interview_m1 congress_m2 bank_f3 eu_f4"
FT="--mix training/data/synth --mix training/data/dev --limit 1200 --mix-weight 0.01 --lr 1e-4 --warmup 20 --threads 2"
for c in $CLIPS; do
    python -m training.motion.train --corpus training/data/clips --exclude clip:$c $FT "$@" \
        --init "$BASE" --out $R/ft_$NAME/loo_$c --steps "$STEPS" --ckpt-every "$STEPS"
    python -m training.motion.export --ckpt $R/ft_$NAME/loo_$c/last.pt --out $R/ft_$NAME/loo --name loo_$c
done
