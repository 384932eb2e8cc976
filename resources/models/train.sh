#!/bin/sh
# Trains the two models shipped in resources/models, on the CPU, in about four minutes.
# Deterministic for the seed on a given torch version (CPU kernels).
set -e
cd "$(dirname "$0")/../.."
# The settings the shipped cards record (batches of 64, Adam 1e-3: the defaults then); the
# small models now start with zero biases, so a retrain differs in its weights.
python main.py train --dataset shapes --n 12000 --model tinyvgg --epochs 25 --seed 0 --batch-size 64 --lr 0.001 \
    --log-every 1000 --device cpu --out resources/models/tinyvgg_shapes
python main.py train --dataset digits --model vit --epochs 40 --seed 0 --batch-size 64 --lr 0.001 \
    --log-every 1000 --device cpu --out resources/models/vit_digits
# The optimizer state is only for resuming a run; the shipped checkpoints do without it.
rm -f resources/models/tinyvgg_shapes/train_state.pt resources/models/vit_digits/train_state.pt
