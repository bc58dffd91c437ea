#!/usr/bin/env bash
# The translator's depth sweep (docs/RESULTS.md, "Translation: depth"):
# installs what it needs, builds mt-train, then runs experiments/mt_depth.py
# with Debian's Python (standard library only).
#   bash experiments/mt-depth.sh           the sweep: 33 runs, about 45 minutes of one core
#   bash experiments/mt-depth.sh --quick   the same path on tiny runs, under a minute
# Finished runs in runs/mt-depth*/ are reused; delete the folder to rerun them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh mt
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target mt-train > /dev/null
exec /usr/bin/python3 experiments/mt_depth.py "$@"
