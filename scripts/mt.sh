#!/usr/bin/env bash
# The README's fourth job: install what is needed (the packages whose
# gettext catalogs make the corpus), build mt-train (Release, ./build),
# train the English->German translator with its defaults for 8.5 minutes,
# then translate the test split by beam search (4 hypotheses, chosen on the
# validation split) and print its chrF2 next to the copy baseline's, with a
# few sample translations (the goal: 10 minutes on 2 cores in all, the
# packages' install aside; docs/translation.md). Metrics, checkpoint and plot go to
# ./runs/mt/. Extra arguments go to mt-train (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh mt
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSRP_BUILD_TESTS=OFF > /dev/null
cmake --build build -j"$(nproc)" --target mt-train
mkdir -p runs/mt
exec ./build/examples/mt/mt-train \
  --minutes 8.5 --chrf test --beam 4 --show 8 \
  --metrics runs/mt/metrics.jsonl \
  --checkpoint runs/mt/checkpoint.srp \
  --plot runs/mt/plot.png "$@"
