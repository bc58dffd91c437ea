#!/usr/bin/env bash
# The robustness checks of docs/ROBUSTNESS.md, on their own: the regression
# suite, the crash and full-disk tests, the two-thread test and every other
# test under AddressSanitizer + UBSan, the mutants the regression suite
# must catch, the fuzz targets for 60 s each, then the unit tests under
# ThreadSanitizer. (.ci/run runs all of this too, among the rest, with 30 s
# of fuzzing per target.)
#   bash scripts/robustness.sh      about 16 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh test
command -v /usr/bin/python3 > /dev/null || bash scripts/install-deps.sh study
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSRP_SANITIZE=ON -DSRP_WERROR=ON \
  -DSRP_BUILD_BENCH=OFF > /dev/null
cmake --build build-sanitize -j"$(nproc)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-sanitize --output-on-failure -j"$(nproc)"
bash tests/mutants.sh
bash tests/fuzz/run.sh
bash scripts/tsan.sh
