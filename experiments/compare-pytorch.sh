#!/usr/bin/env bash
# One training step of the ViT-lite (benchmark configuration: patch 4, 50
# tokens, D 128, depth 6, batch 128) in libsigmareparam and in PyTorch
# (Debian's python3-torch, official SNLinear semantics), run in turns on the
# same machine: ROUNDS rounds (default 5) at each thread count, each round a
# median of 10 steps. PyTorch's own step time varies a lot between rounds,
# so the summary gives each side's median over the rounds with its min-max,
# and the ratio of the medians with the range of the per-round ratios.
# PyTorch runs at its best: where the environment pins OpenBLAS to older
# kernels (OPENBLAS_CORETYPE, with OPENBLAS_L2_SIZE), PyTorch's command alone
# runs without the pin, so that its GEMMs use the kernels OpenBLAS picks for
# this CPU; ours keep the environment as it is. Both sides print the
# kernels they ran with.
#   bash experiments/compare-pytorch.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
bash scripts/install-deps.sh compare
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target bench_train > /dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for threads in 1 2; do
  for round in $(seq "$rounds"); do
    ./build/bench/bench_train --json --threads "$threads" --repeats 10 | tee -a "$out"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
      /usr/bin/python3 bench/torch_train_step.py --threads "$threads" --repeats 10 | tee -a "$out"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
setup = next(r for r in rows if r.get("setup"))
torch_run = next(r for r in rows if r.get("bench") == "torch_train_step")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
           "unknown CPU")
print(f"CPU: {cpu}")
print(f"libsigmareparam: GEMM backend {setup['gemm_backend']}, OpenBLAS kernels "
      f"{setup['openblas_core']}, fp32")
print(f"PyTorch {torch_run['torch']}: OpenBLAS kernels {torch_run['openblas_core']} "
      f"(OPENBLAS_CORETYPE unset for PyTorch), fp32")
for t in sorted({r["threads"] for r in rows if "threads" in r}):
    ours = [r["step_ms"] for r in rows if r.get("threads") == t and r["bench"] == "train_step"]
    torch = [r["step_ms"] for r in rows if r.get("threads") == t and r["bench"] == "torch_train_step"]
    ratios = [p / o for o, p in zip(ours, torch)]
    mo, mt = statistics.median(ours), statistics.median(torch)
    print(f"threads {t}, {len(ours)} rounds: libsigmareparam {mo:.1f} ms/step "
          f"({min(ours):.1f}-{max(ours):.1f}), PyTorch {mt:.1f} ms/step "
          f"({min(torch):.1f}-{max(torch):.1f}): {mt / mo:.2f}x faster "
          f"(per round {min(ratios):.2f}-{max(ratios):.2f}x)")
PY
