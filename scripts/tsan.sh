#!/usr/bin/env bash
# ThreadSanitizer over the unit tests (docs/ROBUSTNESS.md): a clang build
# with -fsanitize=thread (SRP_TSAN), run with one OpenMP runtime that TSan
# understands.
#
# Our loops, OpenBLAS and oneDNN all use OpenMP. Debian builds the last two
# against libgomp, whose barriers TSan cannot see, so every parallel loop
# would be reported as a race. LLVM's libomp implements libgomp's ABI, and
# its Archer tool reports its barriers, locks and tasks to TSan. So the
# library and tests are built with clang against libomp, and a folder whose
# libgomp.so.1 is libomp goes first on LD_LIBRARY_PATH, so that OpenBLAS and
# oneDNN load libomp too.
#
# OpenBLAS, oneDNN and libomp are not instrumented: TSan sees none of their
# own loads, stores or spinlocks. ignore_noninstrumented_modules drops what
# it would half-see of them, the memcpy and mutex calls they make through
# its interceptors (without it, OpenBLAS's packing buffer, handed from one
# caller thread to the next under an assembly spinlock, is reported in
# test_threads). Every access of our own code stays checked: a race put
# into linear.c's parallel dot product is reported at its line.
#
#   bash scripts/tsan.sh [ctest -R regex]     (~2 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh tsan
build=build-tsan
# Every test on 2 threads (SRP_TEST_THREADS), so that each parallel region
# runs with a second thread for TSan to watch.
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSRP_TSAN=ON \
  -DSRP_BUILD_BENCH=OFF -DSRP_BUILD_EXAMPLES=OFF -DSRP_TEST_THREADS=2 > /dev/null
cmake --build "$build" -j"$(nproc)"

libdir=$(dirname "$(ls /usr/lib/llvm-*/lib/libarcher.so | sort -V | tail -1)")
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
ln -s "$libdir/libomp.so.5" "$shim/libgomp.so.1"
export LD_LIBRARY_PATH="$shim:$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_TOOL_LIBRARIES="$libdir/libarcher.so"
export ARCHER_OPTIONS="verbose=1"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" ${1:+-R "$1"}
