#!/usr/bin/env bash
# Train on GPUs: one process drives every GPU of a node through one ("data", "fsdp", "tensor") mesh; see --help.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: launch/gpu.sh [-h|--help] [--mem-fraction F] CAUJAX_TRAIN_ARGS...

One node: one process, every visible GPU in the mesh (choose them with CUDA_VISIBLE_DEVICES):
  launch/gpu.sh --method sft --config configs/qwen2p5_7b_sft.py --mesh.fsdp=8

Several nodes: run the same command on every node with these three variables set (caujax/distributed.py);
the mesh then spans every GPU of every node, and run_dir must be a path all nodes share:
  JAX_COORDINATOR_ADDRESS=node0:1234 JAX_NUM_PROCESSES=NODES JAX_PROCESS_ID=RANK launch/gpu.sh ...
Under SLURM or Open MPI, CAUJAX_DISTRIBUTED=auto lets JAX read them from the scheduler instead; JAX then gives
each process one GPU (its local rank), so start one task per GPU (srun --ntasks-per-node=GPUS_PER_NODE).

Paths (--config, --run_dir, data) are relative to the directory you run it from; caujax must be installed
(pip install -e .).

Arguments:
  -h, --help             this text
  --mem-fraction F       share of each GPU's memory XLA takes up front, in (0, 1]; must come first (default:
                         XLA_PYTHON_CLIENT_MEM_FRACTION if set, else 0.9: no allocator growth stalls, room for
                         cuDNN workspaces)
  CAUJAX_TRAIN_ARGS      passed to `python -m caujax.train` (its --help lists every field):
    --config FILE.py     a preset, e.g. configs/qwen2p5_7b_grpo.py (required)
    --method M           sft, dpo, kto, ppo or grpo (default: the config's)
    --run_dir DIR        where metrics, checkpoints and the export go
    --resume             continue run_dir from its last checkpoint
    --FIELD=VALUE        any dotted config field, e.g. --mesh.fsdp=8 --model.compute_dtype=bfloat16

Environment:
  PYTHON                 the interpreter (default python3); it needs the CUDA build of jax:
                         pip install -e . 'jax[cuda13]'
  XLA_FLAGS              kept; the latency-hiding scheduler (overlaps collectives with compute) is added
USAGE
}

mem_fraction="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
  --mem-fraction) mem_fraction="${2:-}"; shift; [ $# -gt 0 ] && shift ;;
  --mem-fraction=*) mem_fraction="${1#*=}"; shift ;;
esac
if ! [[ "$mem_fraction" =~ ^(0?\.[0-9]*[1-9][0-9]*|1(\.0*)?)$ ]]; then
  echo "launch/gpu.sh: --mem-fraction '$mem_fraction': expected a number in (0, 1], e.g. 0.9" >&2
  exit 2
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION="$mem_fraction"
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
exec "${PYTHON:-python3}" -m caujax.train "$@"
