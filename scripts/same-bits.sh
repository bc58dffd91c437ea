#!/usr/bin/env bash
# The proof that a change leaves training bit for bit unchanged: short runs
# of both trainers (the ViT with and without LayerNorm, the LM in each norm
# placement), each with evaluations and checkpoints inside, built before and
# after the change, at a fixed seed and thread count. The metrics files must
# agree line by line, less their wall-clock fields; the checkpoints tensor by
# tensor, by name (srp-checkpoint-diff), less their wall-clock totals
# (train.seconds, train.budget.clocks). Exits 1 at any difference.
#
#   git archive BASE | tar -x -C /tmp/before && cmake -S /tmp/before -B /tmp/before/build ... && cmake --build ...
#   bash scripts/same-bits.sh /tmp/before/build build [OUT_DIR]
#
# Wall-clock fields (dropped before comparing): keys named seconds or
# budget_used (the fraction of --minutes used), any key ending in _ms or
# _seconds, or starting with wall or time. Set SAME_BITS_IGNORE="k1 k2"
# to drop more metrics keys and checkpoint tensors (an intended change, such
# as a new option in the run's fingerprint: "config train.fingerprint"; say
# why), and SAME_BITS_RESHAPED=1 to
# accept tensors stored in another shape with the same bytes.
set -euo pipefail
before=$(realpath "$1") after=$(realpath "$2")
out=${3:-$(mktemp -d)}
ignored=()
for k in ${SAME_BITS_IGNORE:-}; do ignored+=(--ignore "$k"); done
mkdir -p "$out"
diff_tool="$after/examples/tools/srp-checkpoint-diff"
text="$out/corpus.txt"
cat "$(dirname "$0")"/../docs/*.md > "$text" # any fixed text will do

vit_args=(--dataset synthetic --synthetic-train 512 --synthetic-test 256 --val 128 --epochs 2
          --batch 64 --threads 2 --seed 7 --log-every 1 --bound-every 3 --checkpoint-every 5)
lm_args=(--text "$text" --steps 30 --context 32 --batch 8 --depth 2 --warmup 5 --eval-every 10
         --eval-windows 8 --threads 2 --seed 7 --log-every 1 --bound-every 3 --checkpoint-every 10
         --sample 64)

metrics_less_clock() {
  /usr/bin/python3 - "$1" "${SAME_BITS_IGNORE:-}" <<'PY'
import json, sys
ignore = set(sys.argv[2].split())
def clock(k):
    return (k in ignore or k in ("seconds", "budget_used")
            or k.endswith(("_ms", "_seconds")) or k.startswith(("wall", "time")))
for line in open(sys.argv[1]):
    d = json.loads(line)
    print(json.dumps({k: v for k, v in d.items() if not clock(k)}, sort_keys=True))
PY
}

failed=0
run_pair() { # name, trainer path inside a build, args...
  local name=$1 trainer=$2; shift 2
  for side in before after; do
    local build=$before; [ "$side" = after ] && build=$after
    rm -f "$out/$name.$side".*
    "$build/$trainer" "$@" --metrics "$out/$name.$side.jsonl" \
      --checkpoint "$out/$name.$side.ckpt" > "$out/$name.$side.out" 2>&1 \
      || { echo "$name ($side) failed: see $out/$name.$side.out"; failed=1; return; }
  done
  if diff <(metrics_less_clock "$out/$name.before.jsonl") \
          <(metrics_less_clock "$out/$name.after.jsonl") > "$out/$name.metrics.diff" &&
     "$diff_tool" ${SAME_BITS_RESHAPED:+--reshaped} --ignore train.seconds --ignore train.budget.clocks "${ignored[@]}" "$out/$name.before.ckpt" "$out/$name.after.ckpt" > "$out/$name.ckpt.diff"; then
    echo "$name: same metrics ($(wc -l < "$out/$name.after.jsonl") lines), $(cat "$out/$name.ckpt.diff")"
  else
    echo "$name: DIFFERS (see $out/$name.metrics.diff, $out/$name.ckpt.diff)"; failed=1
  fi
}

run_pair vit examples/vit_lite/vit-lite-train "${vit_args[@]}"
run_pair vit-layernorm examples/vit_lite/vit-lite-train "${vit_args[@]}" --layernorm
for arch in sigma sigma-preln postln; do
  run_pair "lm-$arch" examples/char_lm/char-lm-train "${lm_args[@]}" --arch "$arch"
done
exit $failed
