#!/usr/bin/env bash
# bf16 against fp32, one training step (bench_train), in alternated rounds
# so that both see the same machine: the benchmark configuration and the
# trainer's model, ROUNDS rounds (default 5) of --repeats 15 each, 2
# threads. Prints each case's median step over the rounds' medians, the
# min-max, and the ratio of the medians with the per-round range. Needs a
# CPU where bf16 runs (bench_train exits 2 elsewhere, saying why).
#   bash experiments/bf16-speed.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
bash scripts/install-deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target bench_train > /dev/null
bench=build/bench/bench_train
out=$(mktemp)
trainer_model=(--patch 7 --stem 48/2,96/2,128/2,128 --qkv-sigma separate)
for r in $(seq "$rounds"); do
  for model in bench trainer; do
    for p in fp32 bf16; do
      args=(--json --threads 2 --repeats 15 --precision "$p")
      [ "$model" = trainer ] && args+=("${trainer_model[@]}")
      "$bench" "${args[@]}" | grep '"step_ms"' |
        sed "s/^{/{\"round\":$r,\"model\":\"$model\",\"prec\":\"$p\",/" >> "$out"
    done
  done
done
head -1 < <("$bench" --json --threads 2 --repeats 1 --precision bf16)
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for model in ("bench", "trainer"):
    step = {p: {r["round"]: r["step_ms"] for r in rows if r["model"] == model and r["prec"] == p}
            for p in ("fp32", "bf16")}
    med = {p: statistics.median(step[p].values()) for p in step}
    per_round = [step["fp32"][k] / step["bf16"][k] for k in step["fp32"]]
    name = "benchmark configuration" if model == "bench" else "trainer's model"
    print(f"{name}: fp32 {med['fp32']:.1f} ms ({min(step['fp32'].values()):.1f}-"
          f"{max(step['fp32'].values()):.1f}), bf16 {med['bf16']:.1f} ms "
          f"({min(step['bf16'].values()):.1f}-{max(step['bf16'].values()):.1f}): "
          f"{med['fp32'] / med['bf16']:.2f}x (per round {min(per_round):.2f}-{max(per_round):.2f}x)")
PY
rm -f "$out"
