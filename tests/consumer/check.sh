#!/usr/bin/env bash
# Builds the library shared and static, installs each into a scratch prefix,
# runs the installed example program from there, and builds tests/consumer
# against the installed copy both ways: with find_package(sigmareparam)
# (also from a C++-only project) and with pkg-config. Both ways it also
# builds examples/tiny_transformer from its source alone, and runs it through
# its check (accuracy goal, resume bit for bit): it needs nothing but the
# installed library. Run from anywhere.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# tiny_check EXE WORK: the example's own check (one thread: quick and the
# same bits however many cores the machine has)
tiny_check() {
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    cmake -DEXE="$1" -DWORK="$2" -P "$src/examples/tiny_transformer/check.cmake" > "$2.log" 2>&1 ||
    { cat "$2.log"; return 1; }
  tail -n 1 "$2.log"
}

for kind in shared static; do
  shared=$([ "$kind" = shared ] && echo ON || echo OFF)
  prefix="$work/prefix-$kind"
  # the shared build installs the example program too: it must run from
  # this non-system prefix (an RPATH relative to its folder)
  cmake -S "$src" -B "$work/lib-$kind" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=$shared \
    -DSRP_BUILD_TESTS=OFF -DSRP_BUILD_BENCH=OFF -DSRP_BUILD_EXAMPLES=$shared -DSRP_WERROR=ON \
    -DCMAKE_INSTALL_PREFIX="$prefix" > "$work/lib-$kind.log"
  cmake --build "$work/lib-$kind" -j"$(nproc)" >> "$work/lib-$kind.log"
  cmake --install "$work/lib-$kind" >> "$work/lib-$kind.log"
  if [ "$kind" = shared ]; then
    "$prefix/bin/vit-lite-train" --help > "$work/help.txt"
    grep -q -- "--stop-on-collapse" "$work/help.txt"
    echo "installed vit-lite-train runs from $prefix/bin"
  fi

  # 1. CMake package
  cmake -S "$src/tests/consumer" -B "$work/cmake-$kind" -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
  cmake --build "$work/cmake-$kind" > /dev/null
  "$work/cmake-$kind/consumer_c"
  "$work/cmake-$kind/consumer_cpp"
  tiny_check "$work/cmake-$kind/tiny_transformer" "$work/tiny-cmake-$kind"
  cmake -S "$src/tests/consumer/cxx-only" -B "$work/cxx-$kind" -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
  cmake --build "$work/cxx-$kind" > /dev/null
  "$work/cxx-$kind/consumer_cxx_only"

  # 2. pkg-config
  libdir=$(find "$prefix" -name sigmareparam.pc -printf '%h\n' | head -n1)
  export PKG_CONFIG_PATH="$libdir"
  pcflags=(--cflags --libs)
  [ "$kind" = static ] && pcflags=(--static --cflags --libs)
  # shellcheck disable=SC2207
  flags=($(pkg-config "${pcflags[@]}" sigmareparam))
  cc -std=c11 -Wall -Wextra -Wpedantic -Werror "$src/tests/consumer/main.c" -o "$work/pc_c-$kind" "${flags[@]}"
  c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror "$src/tests/consumer/main.cpp" -o "$work/pc_cpp-$kind" "${flags[@]}"
  cc -std=c11 -Wall -Wextra -Wpedantic -Werror "$src/examples/tiny_transformer/tiny_transformer.c" \
    -o "$work/pc_tiny-$kind" "${flags[@]}"
  LD_LIBRARY_PATH="$(dirname "$libdir")" "$work/pc_c-$kind"
  LD_LIBRARY_PATH="$(dirname "$libdir")" "$work/pc_cpp-$kind"
  LD_LIBRARY_PATH="$(dirname "$libdir")" tiny_check "$work/pc_tiny-$kind" "$work/tiny-pc-$kind"
  echo "consumer check ($kind): ok"
done
