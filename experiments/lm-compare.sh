#!/usr/bin/env bash
# The char LM's equal-time comparison (README): every architecture trained
# for the same wall time (default 8 minutes, as the main job) with the
# flags its own search found best (docs/char-lm-recipe.md), one after the
# other, then a table of their validation bits per character.
#   bash experiments/lm-compare.sh [MINUTES]
# Runs go to runs/lm-compare/<arch>.{log,jsonl}. About 5 x (MINUTES + 0.5)
# minutes in all.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-8}
bash scripts/install-deps.sh lm
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSRP_BUILD_TESTS=OFF > /dev/null
cmake --build build -j"$(nproc)" --target char-lm-train > /dev/null
out=runs/lm-compare
mkdir -p "$out"

# arch, then its flags: the defaults are sigmaReparam's recipe; the
# LayerNorm arms with plain linears start from the usual init (embeddings
# and weights at std 0.02). Post-LN at lr 8e-3 never left the unigram
# level (4.87 bits in 2 minutes), so it runs at 4e-3.
arms=(
  "sigma|"
  "sigma-preln|--arch sigma-preln"
  "preln|--arch preln --embed-std 0.02 --init-gain 1 --lr 0.008"
  "postln|--arch postln --embed-std 0.02 --init-gain 1 --lr 0.004"
  "sigma-postln|--arch sigma-postln"
)
for arm in "${arms[@]}"; do
  name=${arm%%|*}
  flags=${arm#*|}
  echo "== $name: char-lm-train --minutes $minutes $flags"
  # shellcheck disable=SC2086
  ./build/examples/char_lm/char-lm-train --minutes "$minutes" $flags \
    --metrics "$out/$name.jsonl" > "$out/$name.log" 2>&1 || echo "   (exit code $?)"
  grep -E "^validation:|^trained" "$out/$name.log" | sed 's/^/   /'
done

echo
echo "| architecture | optimizer, flags | steps in $minutes min | budget used | validation bits/char |"
echo "|---|---|---|---|---|"
for arm in "${arms[@]}"; do
  name=${arm%%|*}
  flags=${arm#*|}
  steps=$(sed -n 's/^trained \([0-9]*\) steps.*/\1/p' "$out/$name.log")
  used=$(sed -n 's/^trained .*: \([0-9.]*%\) of the .*/\1/p' "$out/$name.log")
  bpc=$(sed -n 's/^validation: \([0-9.]*\) bits.*/\1/p' "$out/$name.log")
  echo "| $name | AdamW ${flags:-(defaults)} | ${steps:-} | ${used:-} | ${bpc:-failed} |"
done
bigram=$(sed -n 's/.*bigram \([0-9.]*\), unigram.*/\1/p' "$out/sigma.log" | head -1)
echo "| bigram count model | | | | $bigram |"
