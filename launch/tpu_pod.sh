#!/usr/bin/env bash
# Train on a TPU pod slice: run this same command on every host at once, e.g.
#   gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \
#     --command "cd caujax && launch/tpu_pod.sh --method sft --config configs/r1_qwen_14b_sft.py"
# jax.distributed.initialize() discovers the pod's hosts; the mesh then spans every chip.
# Needs the TPU build of jax: pip install -e . 'jax[tpu]'
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -c 'import sys, jax; jax.distributed.initialize(); from caujax.train import main; main(sys.argv[1:])' "$@"
