#!/usr/bin/env bash
# Train on one GPU node: one process drives every local GPU through one ("data", "fsdp", "tensor") mesh.
#   launch/gpu.sh --method sft --config configs/qwen2p5_7b_sft.py [--mesh.fsdp=8] [--any.dotted=override]
# Needs the CUDA build of jax: pip install -e . 'jax[cuda13]'
set -euo pipefail
cd "$(dirname "$0")/.."
# Let XLA take most of the GPU memory up front (no allocator growth stalls); leave room for cuDNN workspaces.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
exec python -m caujax.train "$@"
