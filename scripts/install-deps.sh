#!/usr/bin/env bash
# Installs, from the Debian archive, what the project needs.
#   install-deps.sh build   compiler, CMake, OpenBLAS, oneDNN, zlib, cJSON
#   install-deps.sh test    build + cmocka, g++ (consumer check), gnuplot (plot test)
#   install-deps.sh train   build + the Fashion-MNIST dataset and gnuplot
#   install-deps.sh lm      build + the char LM's text (fortunes, jargon-text) and gnuplot
#   install-deps.sh mt      build + the translation job's catalogs (the packages of the
#                           manifest in examples/mt/corpus.c) and gnuplot
#   install-deps.sh compare test + python3-torch/numpy (PyTorch comparison, fixtures)
#   install-deps.sh interop build + python3-torch/numpy and the Fashion-MNIST dataset (torch_check.py;
#                           torch_check_lm.py trains on the repository's docs)
#   install-deps.sh study   build + both jobs' data, gnuplot and python3 (the stability study)
#   install-deps.sh fuzz    build + clang, its libFuzzer and OpenMP runtimes (tests/fuzz/run.sh)
#   install-deps.sh tsan    test + clang, LLVM's OpenMP runtime and its Archer tool (scripts/tsan.sh)
#   install-deps.sh mpi     test + Open MPI, the Fashion-MNIST dataset and the LM's text
#                           (SRP_WITH_MPI builds, their tests, experiments/scaling.sh)
# Uses sudo when not run as root. Does nothing for packages already present.
set -euo pipefail

mode=${1:-test}
build_pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libdnnl-dev zlib1g-dev libcjson-dev)
case "$mode" in
  build) pkgs=("${build_pkgs[@]}") ;;
  test) pkgs=("${build_pkgs[@]}" libcmocka-dev g++ gnuplot-nox) ;;
  train) pkgs=("${build_pkgs[@]}" dataset-fashion-mnist gnuplot-nox) ;;
  lm) pkgs=("${build_pkgs[@]}" fortunes jargon-text gnuplot-nox) ;;
  mt) pkgs=("${build_pkgs[@]}" gnuplot-nox apt bash binutils-common coreutils diffutils dpkg
            findutils gettext gettext-base git gnupg-l10n grep krb5-locales libapt-pkg6.0
            libc-l10n libdpkg-perl libglib2.0-data libgnutls30 libpam-runtime login m4 make
            procps sed shared-mime-info tar wget xkb-data) ;;
  compare) pkgs=("${build_pkgs[@]}" libcmocka-dev g++ gnuplot-nox python3-torch python3-numpy) ;;
  interop) pkgs=("${build_pkgs[@]}" python3-torch python3-numpy dataset-fashion-mnist) ;;
  study) pkgs=("${build_pkgs[@]}" dataset-fashion-mnist fortunes jargon-text gnuplot-nox python3) ;;
  fuzz) pkgs=("${build_pkgs[@]}" clang libclang-rt-14-dev libomp-dev) ;;
  tsan) pkgs=("${build_pkgs[@]}" libcmocka-dev clang libclang-rt-14-dev libomp-dev) ;;
  mpi) pkgs=("${build_pkgs[@]}" libcmocka-dev gnuplot-nox libopenmpi-dev openmpi-bin
             dataset-fashion-mnist fortunes jargon-text) ;;
  *) echo "usage: $0 build|test|train|lm|mt|compare|interop|study|fuzz|tsan|mpi" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
