#!/usr/bin/env bash
# The README's main job: install what is needed (with the Fashion-MNIST
# dataset package), build Release in ./build, train the ViT-lite with its
# defaults, in bf16 where the CPU does it fast (--precision auto: fp32
# elsewhere; validated against fp32 over 3 seeds, docs/PERFORMANCE.md).
# Metrics, checkpoint and plot go to ./runs/vit-lite/. Extra arguments go
# to vit-lite-train (see its --help; --precision fp32 overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh train
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSRP_BUILD_TESTS=OFF > /dev/null
cmake --build build -j"$(nproc)" --target vit-lite-train
mkdir -p runs/vit-lite
exec ./build/examples/vit_lite/vit-lite-train \
  --metrics runs/vit-lite/metrics.jsonl \
  --checkpoint runs/vit-lite/checkpoint.srp \
  --plot runs/vit-lite/plot.png --precision auto "$@"
