#!/usr/bin/env bash
# valgrind memcheck over the unit tests and a short training run of each
# trainer: no invalid access, no definite leak. Slow (valgrind runs code
# 20-50x slower; test_spectral alone takes about 17 minutes, the whole list
# about 35), so not in CI: docs/ROBUSTNESS.md has the last result.
#   bash scripts/valgrind.sh [TEST ...]    default: every unit test
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh test
command -v valgrind > /dev/null || { sudo=(); [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" apt-get install -y -q --no-install-recommends valgrind; }
# The portable GEMM backend: in oneDNN's JIT-generated kernels (no symbols,
# no source) valgrind reports hundreds of uses of uninitialised values per
# test that use its matmul, which nobody here can check or fix. Memcheck is
# here for our own code; the oneDNN path runs under ASan in CI.
cmake -S . -B build-valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSRP_BUILD_TESTS=ON \
  -DSRP_BUILD_BENCH=OFF -DSRP_GEMM=openblas > /dev/null
cmake --build build-valgrind -j"$(nproc)" > /dev/null
vg=(valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite --quiet)
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(test_core test_rng test_embedding test_nn test_optim
  test_checkpoint test_safetensors test_regressions test_threads test_contract test_linear
  test_attention test_spectral)
for t in "${tests[@]}"; do
  start=$(date +%s)
  "${vg[@]}" "build-valgrind/tests/$t" > "build-valgrind/$t.valgrind.log" 2>&1 ||
    { tail -40 "build-valgrind/$t.valgrind.log"; echo "$t: valgrind found errors" >&2; exit 1; }
  echo "$t: clean ($(( $(date +%s) - start )) s)"
done
"${vg[@]}" build-valgrind/examples/vit_lite/vit-lite-train --threads 2 --dataset synthetic \
  --synthetic-train 256 --synthetic-test 64 --epochs 1 --batch 32 --dim 32 --depth 2 --heads 2 \
  --mlp-dim 64 --stem 4,4 --checkpoint build-valgrind/vg.ckpt > build-valgrind/vit.valgrind.log 2>&1 ||
  { tail -40 build-valgrind/vit.valgrind.log; exit 1; }
echo "vit-lite-train, 8 steps with a checkpoint: clean"
printf 'the quick brown fox jumps over the lazy dog\n\n%.0s' {1..40} > build-valgrind/text.txt
"${vg[@]}" build-valgrind/examples/char_lm/char-lm-train --threads 2 --text build-valgrind/text.txt \
  --steps 5 --warmup 1 --context 16 --dim 32 --depth 2 --heads 2 --mlp-dim 64 --batch 4 \
  --eval-every 5 --checkpoint build-valgrind/lm.ckpt > build-valgrind/lm.valgrind.log 2>&1 ||
  { tail -40 build-valgrind/lm.valgrind.log; exit 1; }
echo "char-lm-train, 5 steps with a checkpoint: clean"
