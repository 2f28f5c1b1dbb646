#!/usr/bin/env bash
# The shipped motion network, end to end (CPU, 2 threads). Run from the repository root with the
# training extra installed. Every step resumes where it stopped (a finished run is not redone).
#
#   bash training/motion/reproduce.sh [STEPS_BASE] [STEPS_FT]      # shipped: 4000 300
set -euo pipefail
STEPS_BASE=${1:-4000}
STEPS_FT=${2:-300}
R=training/runs

# 1. corpora: synthetic (F1's builder: piper + espeak voices, augmentation, teacher targets),
#    a small piper-only corpus, the real clips with targets fitted from their landmarks (used only
#    by the leave-one-clip-out experiment of step 4), and the real voices without video of
#    ../shared/data/audio with teacher pseudo-labels.
[ -f training/data/synth/manifest.json ] || python -m training.motion.build_corpus --out training/data/synth --items 2000 --workers 2
[ -f training/data/dev/manifest.json ] || python -m training.motion.dev_corpus --out training/data/dev --items 75
[ -f training/data/clips/manifest.json ] || python -m training.motion.real_clips --out training/data/clips
[ -f training/data/pseudo/manifest.json ] || python -m training.motion.pseudo_real --out training/data/pseudo

# 2. base model on synthetic speech only (Whisper tiny.en encoder features, lookahead 2 frames):
#    the shipped model (it sees no real data, so every real clip scores it held out).
python -m training.motion.train --corpus training/data/synth --corpus training/data/dev --limit 1200 \
    --features whisper --out $R/base_w4k --steps "$STEPS_BASE" --ckpt-every 500 --threads 2
python -m training.motion.export --ckpt $R/base_w4k/last.pt --out $R/base4k_export --name model
python -m training.motion.export --ckpt $R/base_w4k/last.pt --out engines/motion/assets --name motion_network

# 3. held-out synthetic check of the sampler (items 1200+ were never trained on).
for g in 2.0 3.0; do
    python -m training.motion.evaluate --model engines/motion/assets/motion_network.onnx --start 1200 \
        --items 16 --engine "{\"guidance\": $g}"
done

# 4. experiments kept for the record (they did NOT beat the base on the real clips; model card):
#    D: fine-tune on the pseudo-labelled real voices (no clip), half the sequences synthetic,
#    item weights for sampling only;
python -m training.motion.train --corpus training/data/pseudo --mix training/data/synth \
    --mix training/data/dev --limit 1200 --mix-weight 0.01 --unweighted-loss --lr 1e-4 --warmup 20 \
    --threads 2 --init $R/base_w4k/last.pt --out $R/ft_D --steps "$STEPS_FT" --ckpt-every "$STEPS_FT"
python -m training.motion.export --ckpt $R/ft_D/last.pt --out $R/ft_D --name model
#    B: leave-one-clip-out fine-tunes adding the other 3 real clips' landmark-fitted targets
#    (smoothed, sigma 1 frame) to D's data.
bash training/motion/ft_loo.sh $R/base_w4k/last.pt B "$STEPS_FT" --corpus training/data/pseudo \
    --smooth-real 1.0 --unweighted-loss

# 5. measure on the real clips: the shipped model (never saw them), the LOO models beside it.
python benchmarks/motion_network.py --loo $R/ft_B/loo
