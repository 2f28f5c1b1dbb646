#!/usr/bin/env bash
# The shipped motion network, end to end (CPU, 2 threads). Run from the repository root with the
# training extra installed. Every step resumes where it stopped.
#
#   bash training/motion/reproduce.sh [STEPS_BASE] [STEPS_FT]
set -euo pipefail
STEPS_BASE=${1:-900}
STEPS_FT=${2:-100}
CLIPS="interview_m1 congress_m2 bank_f3 eu_f4"
R=training/runs

# 1. corpora: synthetic (F1's builder: piper + espeak voices, augmentation, teacher targets),
#    a small piper-only corpus, and the real clips with targets fitted from their landmarks.
[ -f training/data/synth/manifest.json ] || python -m training.motion.build_corpus --out training/data/synth --items 2000 --workers 2
[ -f training/data/dev/manifest.json ] || python -m training.motion.dev_corpus --out training/data/dev --items 75
[ -f training/data/clips/manifest.json ] || python -m training.motion.real_clips --out training/data/clips

# 2. base model on synthetic speech only (Whisper tiny.en encoder features, lookahead 2 frames).
python -m training.motion.train --corpus training/data/synth --corpus training/data/dev --limit 1200 \
    --features whisper --out $R/base_w --steps "$STEPS_BASE"

# 3. leave-one-clip-out fine-tunes (each clip is later scored by the model that did not see it).
FT="--mix training/data/synth --mix training/data/dev --limit 1200 --mix-weight 0.01 --lr 1e-4 --warmup 20"
for c in $CLIPS; do
    python -m training.motion.train --corpus training/data/clips --exclude clip:$c $FT \
        --init $R/base_w/last.pt --out $R/loo_$c --steps "$STEPS_FT" --ckpt-every "$STEPS_FT"
    python -m training.motion.export --ckpt $R/loo_$c/last.pt --out $R/loo --name loo_$c
done

# 4. the shipped model: fine-tuned on all clips; export ONNX + safetensors (parity-checked).
python -m training.motion.train --corpus training/data/clips $FT \
    --init $R/base_w/last.pt --out $R/ft_all --steps "$STEPS_FT" --ckpt-every "$STEPS_FT"
python -m training.motion.export --ckpt $R/base_w/last.pt --out $R/base_export --name model
python -m training.motion.export --ckpt $R/ft_all/last.pt --out engines/motion/assets --name motion_network

# 5. measure: held-out synthetic check (sampler settings), then the real clips (LOO) + speed.
python -m training.motion.evaluate --model $R/base_export/model.onnx --start 1200 --items 24 --grid
python benchmarks/motion_network.py --model $R/base_export/model.onnx --loo $R/loo
