#!/usr/bin/env bash
# One training step of the ViT-lite (benchmark configuration) in
# libsigmareparam and in PyTorch (Debian's python3-torch, official SNLinear
# semantics), run in turns on the same machine, 1 and 2 threads. Prints
# each run's JSON line, then the medians and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh compare
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target bench_train > /dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for threads in 1 2; do
  for round in 1 2 3; do
    ./build/bench/bench_train --json --threads "$threads" --repeats 10 | tee -a "$out"
    /usr/bin/python3 bench/torch_train_step.py --threads "$threads" --repeats 10 | tee -a "$out"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for t in sorted({r["threads"] for r in rows}):
    ours = statistics.median(r["step_ms"] for r in rows if r["threads"] == t and r["bench"] == "train_step")
    torch = statistics.median(r["step_ms"] for r in rows if r["threads"] == t and r["bench"] == "torch_train_step")
    print(f"threads {t}: libsigmareparam {ours:.1f} ms/step ({128e3 / ours:.0f} img/s), "
          f"PyTorch {torch:.1f} ms/step ({128e3 / torch:.0f} img/s): {torch / ours:.2f}x faster")
PY
