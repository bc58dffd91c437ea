#!/usr/bin/env bash
# The README's test command: install what is needed, build Release with
# -Werror in ./build, run every test. Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh test
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSRP_WERROR=ON -DSRP_GEMM=onednn -DSRP_BUILD_TESTS=ON -DSRP_BUILD_EXAMPLES=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
