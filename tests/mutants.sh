#!/usr/bin/env bash
# Shows that the regression suite (tests/lib/test_regressions.c) catches the
# spectral-norm bugs found in public implementations: each broken variant
# is applied to the source, the suite is built and run and must fail, and
# the source is restored (also on Ctrl-C or an error).
#   bash tests/mutants.sh        about 3 minutes on 2 cores
# Builds in ./build-mutants. Exit code 0 when every mutant was caught.
set -euo pipefail
cd "$(dirname "$0")/.."

# name | file | Python regex to replace | replacement
mutants=(
  "u and v never normalized|src/spectral.c|x\[i\] /= denom;|(void)denom;"
  "W divided by sigma twice|src/linear.c|scale = l->gamma / sigma;|scale = l->gamma / (sigma * sigma);"
  "u updated in eval forwards|src/linear.c|if \(training\) \{\n            memcpy\(l->u|if (1) {\n            memcpy(l->u"
  "no SVD init: u a fixed unit vector, not the top singular vector|src/linear.c|memcpy\(l->u, l->cand_u, l->in \* sizeof\(float\)\);\n    memcpy\(l->v, l->cand_v|memset(l->u, 0, l->in * sizeof(float));\n    l->u[0] = 1.0f;\n    memcpy(l->v, l->cand_v"
  "the rank-1 sigma term dropped|src/linear.c|rank1 = \(float\)\(\(double\)scale \* s / sigma\);|rank1 = 0.0f;"
  "off-by-one in the causal mask|src/attention.c|const size_t keys = a->causal \? r \+ 1 : a->keys;|const size_t keys = a->causal ? (r + 2 < a->keys ? r + 2 : a->keys) : a->keys;"
)

backup=$(mktemp -d)
restore() {
  for f in src/spectral.c src/linear.c src/attention.c; do
    [ -f "$backup/$(basename "$f")" ] && cp "$backup/$(basename "$f")" "$f"
  done
  rm -rf "$backup"
}
trap restore EXIT
cp src/spectral.c src/linear.c src/attention.c "$backup/"

cmake -S . -B build-mutants -DCMAKE_BUILD_TYPE=Release -DSRP_BUILD_TESTS=ON \
  -DSRP_BUILD_EXAMPLES=OFF -DSRP_BUILD_BENCH=OFF > /dev/null
build() { cmake --build build-mutants -j"$(nproc)" --target test_regressions > /dev/null 2>&1; }
build
./build-mutants/tests/test_regressions > /dev/null 2>&1 || {
  echo "the suite fails on the unchanged source: fix that first" >&2; exit 1; }

caught=0
for m in "${mutants[@]}"; do
  IFS='|' read -r name file pattern replacement <<< "$m"
  /usr/bin/python3 - "$file" "$pattern" "$replacement" <<'PY'
import re, sys
path, pattern, replacement = sys.argv[1], sys.argv[2], sys.argv[3].replace("\\n", "\n")
text = open(path).read()
new, n = re.subn(pattern.replace("\\n", "\n"), lambda m: replacement, text, count=1)
if n != 1:
    sys.exit("mutant does not apply to %s: %r" % (path, pattern))
open(path, "w").write(new)
PY
  build
  if ./build-mutants/tests/test_regressions > "build-mutants/mutant.log" 2>&1; then
    echo "NOT CAUGHT: $name"
  else
    failed=$(grep -c "^\[  FAILED  \] test_" build-mutants/mutant.log || true)
    echo "caught: $name ($failed of 6 tests failed)"
    caught=$((caught + 1))
  fi
  cp "$backup/$(basename "$file")" "$file"
done
build
echo "$caught of ${#mutants[@]} mutants caught"
[ "$caught" -eq "${#mutants[@]}" ]
