"""DPO of Qwen2.5-7B-Instruct on (worked solution, wrong solution) pairs, the CauGym paper's DPO arm (rllm there).

    python -m caujax.train --config configs/qwen2p5_7b_dpo.py --model.path=/ckpt/Qwen2.5-7B-Instruct \
        --run_dir=runs/qwen2p5_7b_dpo

The paper's own DPO hyperparameters were not available when this preset was written; these are TRL's DPO defaults
(β=0.1, sigmoid loss, η=1e-6, linear decay) with 10% warmup. CauGym's pair file is not public (a Git LFS pointer):
chosen = the engine's worked solution, rejected = the engine's plausible wrong solution (caujax.data.pairs), one
pair per generated problem. The reference π_ref is the initial policy, a frozen copy (matrices in bf16, the compute
dtype) passed to each step; `--reference.mode=cached` instead runs it once before training, stores its log-probs,
and frees its memory.
tokens per step = 2 x 32 pairs x 4096; 3,500 pairs / 32 = 109 steps per epoch, 2 epochs (our choice) = 218 steps.

Planned memory (python -m caujax.plan --config configs/qwen2p5_7b_dpo.py --mesh fsdp=8 --model.remat=X), GiB per
device: train step peak none 165, save_dots 66, save_attention 30, full 27. So remat='save_attention', the fastest
policy whose step leaves 20% of an 80 GB GPU free.
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.losses.params import DPOParams


def get_config() -> RunConfig:
    return RunConfig(
        method="dpo",
        model=ModelSource(path="checkpoints/Qwen2.5-7B-Instruct", param_dtype="float32", compute_dtype="bfloat16",
                          remat="save_attention"),
        steps=218,
        run_dir="runs/qwen2p5_7b_dpo",
        data=DataConfig(source="generated", num_examples=3500, seq_len=4096, batch_size=32, micro_batch_size=8),
        optim=OptimConfig(lr=1e-6, schedule="linear", warmup_ratio=0.1, max_grad_norm=1.0),
        dpo=DPOParams(beta=0.1, loss_type="sigmoid"),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=50, keep=2),
    )
