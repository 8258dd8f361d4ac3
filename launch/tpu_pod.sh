#!/usr/bin/env bash
# Train on a TPU pod slice: the same command on every host at once; see --help.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: launch/tpu_pod.sh [-h|--help] CAUJAX_TRAIN_ARGS...

Runs `python -m caujax.train CAUJAX_TRAIN_ARGS...` on this host as one process of a multi-host run. Start it on
every worker of the TPU VM pod at once, e.g.

  gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \
    --command "cd caujax && launch/tpu_pod.sh --method grpo --config configs/r1_qwen_14b_grpo.py"

JAX finds the pod's hosts itself (CAUJAX_DISTRIBUTED=auto, caujax/distributed.py) and the
("data", "fsdp", "tensor") mesh spans every chip of the slice. Each host draws the same deterministic batch order
and builds only its own chips' rows (SFT/DPO/KTO); process 0 alone prints, logs and writes run files;
every host writes its shards of the orbax checkpoint, so run_dir must be a directory all hosts share (NFS, a
mounted bucket).
Paths are relative to the directory it is run from; caujax must be installed there (pip install -e .).

Arguments (all passed to caujax.train; `python -m caujax.train --help` lists every field):
  -h, --help             this text
  --config FILE.py       a preset, e.g. configs/r1_qwen_14b_grpo.py (required)
  --method M             sft, dpo, kto, ppo or grpo (default: the config's)
  --run_dir DIR          where metrics, checkpoints and the export go
  --resume               continue run_dir from its last checkpoint
  --FIELD=VALUE          any dotted config field, e.g. --mesh.fsdp=32 --mesh.tensor=2 --steps=500

Environment:
  PYTHON                 the interpreter (default python3); it needs the TPU build of jax:
                         pip install -e . 'jax[tpu]'
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
export CAUJAX_DISTRIBUTED=auto
exec "${PYTHON:-python3}" -m caujax.train "$@"
