#!/usr/bin/env bash
# The README's second job: install what is needed (with the text of the
# fortunes and jargon-text packages), build Release in ./build, train the
# char LM with its defaults (8 minutes of training), then print its
# validation bits per character and a sample. Metrics, checkpoint and plot
# go to ./runs/char-lm/. Extra arguments go to char-lm-train (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh lm
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSRP_BUILD_TESTS=OFF > /dev/null
cmake --build build -j"$(nproc)" --target char-lm-train
mkdir -p runs/char-lm
exec ./build/examples/char_lm/char-lm-train \
  --metrics runs/char-lm/metrics.jsonl \
  --checkpoint runs/char-lm/checkpoint.srp \
  --plot runs/char-lm/plot.png \
  --sample 600 --prompt "The " "$@"
