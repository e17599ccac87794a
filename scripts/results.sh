#!/usr/bin/env bash
# Reproduce the runs behind RESULTS.md: train each named run (resuming if its
# folder already has checkpoints), then evaluate it. Usage:
#   bash scripts/results.sh synth_mlc london_mlc ...   (no names: every run)
# Each run's wall time is appended to runs/results_times.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

SYNTH="--flagfile=configs/demo.flags"          # synthetic, 7 expressions, 64 px, batch 16, 1000 steps
LONDON="--flagfile=configs/london.flags --train_steps=1000 --test_fraction=0.25"   # London neutral<->happy, 64 px, batch 8, 26 held-out people

declare -A RUNS=(
  [synth_mlc]="$SYNTH"
  [synth_pix2pix]="$SYNTH --flagfile=configs/pix2pix.flags"
  [synth_stargan]="$SYNTH --flagfile=configs/stargan.flags"
  [synth_crit16]="$SYNTH --critic_levels=16"
  [synth_crit32]="$SYNTH --critic_levels=32"
  [synth_nocritic]="$SYNTH --flagfile=configs/ablation_none.flags"
  [synth_novariation]="$SYNTH --flagfile=configs/ablation_no_variation.flags"
  [london_mlc]="$LONDON"
  [london_pix2pix]="$LONDON --flagfile=configs/pix2pix.flags"
  [london_stargan]="$LONDON --flagfile=configs/stargan.flags"
  [london_pix2pix_film]="$LONDON --flagfile=configs/pix2pix.flags --g_conditioning=film"
)
ORDER=(london_mlc london_pix2pix london_stargan synth_pix2pix synth_stargan synth_crit16 synth_crit32
       synth_nocritic synth_novariation synth_mlc london_pix2pix_film)

names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${ORDER[@]}")
mkdir -p runs
for name in "${names[@]}"; do
  args=${RUNS[$name]:?unknown run $name}
  start=$(date +%s)
  # shellcheck disable=SC2086
  python -m mlc_keras.train $args --workdir="runs/$name"
  trained=$(date +%s)
  # One classifier per data set and split, shared by every run on it.
  # London: 152 training images; AlexNet needs a lower rate and more epochs there.
  case $name in
    london_*) eval_args="--classifier_epochs=60 --classifier_lr=3e-4" ;;
    *) eval_args="--classifier_epochs=15" ;;
  esac
  # shellcheck disable=SC2086
  python -m mlc_keras.evaluate --workdir="runs/$name" $eval_args \
    --classifier_cache=runs/classifiers
  done_at=$(date +%s)
  printf '%s\t%s\ttrain_s=%d\teval_s=%d\n' "$name" "$(date -u +%FT%TZ)" \
    $((trained - start)) $((done_at - trained)) >> runs/results_times.tsv
done
