#!/usr/bin/env bash
# Issue 14's same-run A/B: float32 and bfloat16 training steps of the default
# model (128 px, batch 16, the full MLC step), alternating, each round in its
# own process so that its peak RSS can be read; then one float32 per-op
# profile. Run it with nothing else on the CPU:
#   bash scripts/bench_precision_rounds.sh [ROUNDS] [OUT]
# It prints, per run, the benchmark's final JSON line and the peak RSS
# (GNU time's maximum resident set size), and the float32 profile's table.
set -euo pipefail
rounds=${1:-2}
out=${2:-/tmp/bench_precision_rounds}
mkdir -p "$out"
export TF_ENABLE_ONEDNN_OPTS=${TF_ENABLE_ONEDNN_OPTS:-1}
command -v /usr/bin/time >/dev/null || { echo "bench_precision_rounds: /usr/bin/time (GNU time) is needed for the peak RSS" >&2; exit 2; }
grep -q amx_bf16 /proc/cpuinfo && echo "cpu flags: amx_bf16 present" || echo "cpu flags: no amx_bf16"
for r in $(seq 1 "$rounds"); do
  for p in float32 bfloat16; do
    log="$out/round${r}_$p.log"
    /usr/bin/time -f "peak_rss_kb %M" python -m mlc_keras.benchmark \
      --steps=4 --warmup_steps=1 --mixed_precision="$p" >"$log" 2>&1
    echo "round $r $p: $(grep '^{' "$log" | tail -1) $(grep peak_rss_kb "$log")"
  done
done
log="$out/profile_float32.log"
python -m mlc_keras.benchmark --steps=2 --warmup_steps=1 --mixed_precision=float32 \
  --profile_dir="$out/prof_float32" >"$log" 2>&1
sed -n '/profiler/,$p' "$log"
