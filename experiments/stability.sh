#!/usr/bin/env bash
# The stability study (docs/RESULTS.md): installs what it needs, builds both
# trainers, then runs experiments/stability.py with Debian's
# Python (standard library only; it drives the trainers and gnuplot).
#   bash experiments/stability.sh           the full study, under 2 hours on 2 cores
#   bash experiments/stability.sh --quick   the same path on tiny runs, about a minute
# Finished runs in runs/stability*/ are reused; delete the folder to rerun them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh study
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target vit-lite-train char-lm-train > /dev/null
exec /usr/bin/python3 experiments/stability.py "$@"
