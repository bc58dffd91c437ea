#!/usr/bin/env bash
# Data-parallel scaling on this machine (docs/SCALING.md): both trainers at
# their default model and global batch (the ViT-lite on Fashion-MNIST, its
# stem included; the char LM with --steps, so that no --minutes plan runs),
# as 1 process on 1 thread, as 2 MPI ranks on 1 thread each, and as 1
# process on 2 threads, alternated over ROUNDS rounds (default 3) so that
# the machine's drift hits every arm alike; then the median and the range
# of each arm's time per step.
#   bash experiments/scaling.sh [ROUNDS] [STEPS]
# Runs go to runs/scaling/: 3 x ROUNDS x 2 runs of STEPS (default 100)
# steps each, plus each run's start (the ViT loads Fashion-MNIST).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
steps=${2:-100}
bash scripts/install-deps.sh mpi
cmake -S . -B build-mpi -DCMAKE_BUILD_TYPE=Release -DSRP_WITH_MPI=ON -DSRP_BUILD_TESTS=OFF \
  -DSRP_BUILD_BENCH=OFF > /dev/null
cmake --build build-mpi -j"$(nproc)" --target vit-lite-train char-lm-train > /dev/null
out=runs/scaling
mkdir -p "$out"
mpirun=(mpirun --oversubscribe --allow-run-as-root)
vit=./build-mpi/examples/vit_lite/vit-lite-train
lm=./build-mpi/examples/char_lm/char-lm-train

# arm name, then how to launch a trainer with its thread count
arms=("1 process x 1 thread|1|1" "2 ranks x 1 thread|2|1" "1 process x 2 threads|1|2")
run_arm() { # trainer-path ranks threads log, then the trainer's flags
  local exe=$1 ranks=$2 threads=$3 log=$4
  shift 4
  if [ "$ranks" = 1 ]; then
    "$exe" --threads "$threads" "$@" > "$log" 2>&1
  else
    "${mpirun[@]}" -np "$ranks" "$exe" --threads "$threads" "$@" > "$log" 2>&1
  fi
  sed -n 's/.*(--stop-after-steps; \([0-9.]*\) ms per step.*/\1/p' "$log"
}

for job in vit lm; do
  for r in $(seq 1 "$rounds"); do
    for arm in "${arms[@]}"; do
      IFS='|' read -r name ranks threads <<< "$arm"
      log="$out/$job-${ranks}r${threads}t-$r.log"
      if [ "$job" = vit ]; then
        ms=$(run_arm "$vit" "$ranks" "$threads" "$log" --stop-after-steps "$steps")
      else
        ms=$(run_arm "$lm" "$ranks" "$threads" "$log" --steps 100000 --stop-after-steps "$steps")
      fi
      echo "$job|$name|$ms" >> "$out/times.txt.new"
      echo "$job round $r, $name: $ms ms per step"
    done
  done
done
mv "$out/times.txt.new" "$out/times.txt"

echo
echo "| job | arm | ms per step, median (range) | speed-up over 1 x 1 |"
echo "|---|---|---|---|"
for job in vit lm; do
  base=""
  for arm in "${arms[@]}"; do
    name=${arm%%|*}
    read -r med lo hi < <(grep "^$job|$name|" "$out/times.txt" | cut -d'|' -f3 | sort -n |
      awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; print m, v[1], v[NR]}')
    [ -z "$base" ] && base=$med
    awk -v j="$job" -v n="$name" -v m="$med" -v lo="$lo" -v hi="$hi" -v b="$base" \
      'BEGIN { printf "| %s | %s | %.1f (%.1f-%.1f) | %.2fx |\n", j, n, m, lo, hi, b / m }'
  done
done
grep -h "gradient allreduce" "$out"/vit-2r1t-*.log "$out"/lm-2r1t-*.log | sed 's/^/  /' || true
