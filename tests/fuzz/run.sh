#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in ./build-fuzz and
# runs each for SECONDS (default 60; CI runs 30) from its seed corpus in
# tests/fuzz/corpus/<target>/ (copied: the repository's seeds stay as they
# are). A crash stops the script with the target's report; the input that
# crashed is saved as build-fuzz/crash-*, to become a regression test.
#   bash tests/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/install-deps.sh fuzz
seconds=${1:-60}
targets=(idx cifar checkpoint checkpoint_table safetensors text options mo)
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSRP_BUILD_FUZZ=ON \
  -DSRP_BUILD_TESTS=OFF -DSRP_BUILD_BENCH=OFF -DSRP_BUILD_EXAMPLES=OFF -DSRP_GEMM=openblas > /dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}" > build-fuzz/build.log 2>&1 ||
  { tail -30 build-fuzz/build.log; exit 1; }
total=0
for t in "${targets[@]}"; do
  corpus=build-fuzz/corpus/$t
  mkdir -p "$corpus"
  cp tests/fuzz/corpus/"$t"/* "$corpus"/
  log=build-fuzz/fuzz_$t.log
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      ./build-fuzz/tests/fuzz/fuzz_"$t" -max_total_time="$seconds" -print_final_stats=1 \
      -close_fd_mask=3 -artifact_prefix=build-fuzz/ "$corpus" > "$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz_$t: CRASH (input saved under build-fuzz/)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  total=$((total + runs))
  echo "fuzz_$t: $runs inputs in ${seconds} s, no crash ($(ls "$corpus" | wc -l) in the corpus)"
done
echo "all targets: $total inputs, no crash"
