#!/usr/bin/env bash
# A/B of kernel changes in one device call: the tree as it is, then each patch applied on top of it
# in turn, each built and run with the same commands on the same GPU, so the timings compare
# directly (calls land on different machines; one call's variants share one).
# Here:  mkdir -p ab && git diff main...BRANCH > ab/NAME.patch   (ab/ travels with the checkout)
# There: . .deps/unpack-debs.sh; bash bench/ab.sh ab/*.patch
# AB_TARGETS: what to build (default: test_gpu_gla bench_gla); AB_TEST: run for every variant,
# pass/fail summary kept (default: the GLA GPU test; put `compute-sanitizer --tool memcheck
# --leak-check no` before it to memcheck each variant too); AB_RUN: the timing command (default:
# bench_gla at T = 4K, 16K, 64K); both are shell command lines. Every step is cut to what is left
# before DEADLINE (570 s). For a whole model: AB_TARGETS=linnet AB_TEST= AB_RUN='build/linnet
# train recipes/gla-small.yaml --out $(mktemp -d) --no-sample --set train.steps=12 | tail -2'.
# Log: $OUT/ab.txt (plus one test log per variant).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/ab}
mkdir -p "$out"
log=$out/ab.txt
DEADLINE=${DEADLINE:-570}
limit() { local left=$((DEADLINE - SECONDS - 20)); echo $(($1 < left ? $1 : (left > 1 ? left : 1))); }
targets=${AB_TARGETS:-test_gpu_gla bench_gla}
test_cmd=${AB_TEST-build/tests/test_gpu_gla} # AB_TEST= (empty): no test
run_cmd=${AB_RUN:-build/bench/bench_gla 16 128 32768 4096 16384 65536}
. scripts/device-deps.sh # the carried .debs
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$log"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > "$out/cmake.txt" 2>&1 || { tail -20 "$out/cmake.txt"; exit 1; }

variant() { # build and run the tree as it now is, under the name $1
  local t0=$SECONDS t
  # configure again: a patch may add sources or targets; build the named targets this variant has
  cmake -S . -B build > "$out/cmake.txt" 2>&1 || { echo "== $1: cmake failed" | tee -a "$log"; tail -20 "$out/cmake.txt" | tee -a "$log"; return; }
  for t in $targets; do # one at a time: a target this variant lacks (unknown to the generator) is left out
    timeout "$(limit 300)" cmake --build build --target "$t" -j 16 > "$out/build.txt" 2>&1 && continue
    grep -qE 'unknown target|No rule to make target' "$out/build.txt" && continue
    echo "== $1: build failed" | tee -a "$log"; grep -iE -A6 'error|stop' "$out/build.txt" | head -30 | tee -a "$log"
    tail -5 "$out/build.txt" | tee -a "$log"; return
  done
  echo "== $1 (built in $((SECONDS - t0)) s)" | tee -a "$log"
  if [ -n "$test_cmd" ]; then
    timeout "$(limit 150)" bash -c "$test_cmd" > "$out/test-$1.txt" 2>&1
    echo "test rc=$? $(grep -cE 'rel. error .* > ' "$out/test-$1.txt") comparisons over tolerance;" \
      "$(grep -E 'PASSED|FAILED|ERROR SUMMARY' "$out/test-$1.txt" | tr '\n' ' ')" | tee -a "$log"
  fi
  timeout "$(limit 120)" bash -c "$run_cmd" 2>&1 | tee -a "$log"
}

variant base
for p in "$@"; do
  name=$(basename "$p" .patch)
  if ! patch -p1 -s --dry-run < "$p" > /dev/null; then echo "== $name: does not apply" | tee -a "$log"; continue; fi
  patch -p1 -s < "$p"
  variant "$name"
  patch -p1 -s -R < "$p"
done
rm -f "$out/build.txt"
# last, a short table: per variant the test summary and its timings (bench_gla: fwd+bwd ms per T;
# bench_attention: fwd+bwd (fwd) ms per T; a training run: its tok/s figures)
summary=$(awk '/^== / { name = $2; sub(/:$/, "", name); if (!(name in seen)) { seen[name] = 1; order[++n] = name } }
     /^== .*(build failed|does not apply)/ { t[name] = "failed" }
     /^test rc=/ { t[name] = $2 }
     /^T [0-9]+ B [0-9]+ fwd_ms/ { v[name] = v[name] " T" $2 ":" $8 }
     /^T [0-9]+ B [0-9]+ ms .* fwd_ms/ { v[name] = v[name] " T" $2 ":" $6 "(" $10 ")" }
     /tok\/s/ && match($0, /[0-9]+ tok\/s/) { v[name] = v[name] " " substr($0, RSTART, RLENGTH) }
     END { for (i = 1; i <= n; i++) printf "%-16s %-6s%s\n", order[i], t[order[i]], v[order[i]] }' "$log")
printf '== summary\n%s\n' "$summary" | tee -a "$log"
