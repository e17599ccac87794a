#!/usr/bin/env bash
# Serve an mlc_keras export root with the official TensorFlow Serving image.
#
#   serving/launch.sh EXPORT_ROOT [extra tensorflow_model_server flags...]
#
# EXPORT_ROOT is the --output folder of `python -m mlc_keras.export`; it must
# hold mlc/<version>/saved_model.pb (the model name in serving/models.config).
# Ports: 8500 gRPC, 8501 REST (+ /monitoring/prometheus/metrics).
# Model warm-up is on by default in tensorflow_model_server
# (--enable_model_warmup=true): each version replays its
# assets.extra/tf_serving_warmup_requests before it becomes AVAILABLE.
#
# Environment:
#   TF_SERVING_IMAGE  image (default tensorflow/serving:latest; pin a tag
#                     whose TensorFlow is at least the one used to export)
#   GRPC_PORT         host port for gRPC (default 8500)
#   REST_PORT         host port for REST (default 8501)
#   BIND              host address to publish on (default 127.0.0.1; use
#                     0.0.0.0 to accept other machines)
#   CONTAINER_NAME    docker container name (default mlc-serving)
#   TF_ENABLE_ONEDNN_OPTS            passed to the server (default 1: oneDNN
#                     on, which TensorFlow leaves off on AMD CPUs)
#   TF_ONEDNN_ASSUME_FROZEN_WEIGHTS  passed to the server (default 1: filters
#                     are reordered once and kept; batch 1 runs about 2x
#                     faster on AVX2 CPUs, see BENCHMARKS.md; the server never
#                     changes a weight, so the cache cannot go stale)
set -euo pipefail

usage() {  # the comment block above, without the '# '
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  usage
  [[ $# -ge 1 ]] && exit 0 || exit 2
fi

export_root=$1
shift
if [[ ! -d "$export_root" ]]; then
  echo "error: export root '$export_root' is not a directory" >&2
  exit 2
fi
export_root=$(cd "$export_root" && pwd)
if ! compgen -G "$export_root/mlc/[0-9]*/saved_model.pb" > /dev/null; then
  echo "error: no $export_root/mlc/<version>/saved_model.pb; export first:" >&2
  echo "  python -m mlc_keras.export --workdir=RUN --output=$export_root" >&2
  exit 2
fi
if ! command -v docker > /dev/null; then
  echo "error: docker not found (this script runs the tensorflow/serving image)" >&2
  exit 2
fi

config_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image=${TF_SERVING_IMAGE:-tensorflow/serving:latest}
grpc_port=${GRPC_PORT:-8500}
rest_port=${REST_PORT:-8501}
bind=${BIND:-127.0.0.1}
name=${CONTAINER_NAME:-mlc-serving}

echo "serving $export_root as model 'mlc': gRPC $bind:$grpc_port  REST http://$bind:$rest_port" >&2
# The image's entrypoint runs tensorflow_model_server --port=8500
# --rest_api_port=8501 and appends these flags; --model_config_file
# overrides its MODEL_NAME / MODEL_BASE_PATH defaults.
exec docker run --rm --init --name "$name" \
  -p "$bind:$grpc_port:8500" \
  -p "$bind:$rest_port:8501" \
  -v "$export_root:/models:ro" \
  -v "$config_dir:/config:ro" \
  -e "TF_ENABLE_ONEDNN_OPTS=${TF_ENABLE_ONEDNN_OPTS:-1}" \
  -e "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=${TF_ONEDNN_ASSUME_FROZEN_WEIGHTS:-1}" \
  "$image" \
  --model_config_file=/config/models.config \
  --model_config_file_poll_wait_seconds=60 \
  --file_system_poll_wait_seconds=30 \
  --enable_batching=true \
  --batching_parameters_file=/config/batching_parameters.txt \
  --monitoring_config_file=/config/monitoring.config \
  --rest_api_timeout_in_ms=30000 \
  "$@"
