#!/usr/bin/env bash
# The README's second job: install what is needed (with the text of the
# fortunes and jargon-text packages), build Release in ./build, train the
# char LM with its defaults (8 minutes of training), in bf16 where the CPU
# does it fast (--precision auto: fp32 elsewhere; its extra steps lower the
# bits per character, docs/PERFORMANCE.md), then print its validation bits
# per character and a sample. Metrics, checkpoint and plot go to
# ./runs/char-lm/. Extra arguments go to char-lm-train (--help;
# --precision fp32 overrides).
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
  --sample 600 --prompt "The " --precision auto "$@"
