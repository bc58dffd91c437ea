#!/usr/bin/env bash
# Builds the library shared and static, installs each into a scratch prefix,
# runs the installed example program from there, and builds tests/consumer
# against the installed copy both ways: with find_package(sigmareparam)
# (also from a C++-only project) and with pkg-config. Run from anywhere.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

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
  LD_LIBRARY_PATH="$(dirname "$libdir")" "$work/pc_c-$kind"
  LD_LIBRARY_PATH="$(dirname "$libdir")" "$work/pc_cpp-$kind"
  echo "consumer check ($kind): ok"
done
