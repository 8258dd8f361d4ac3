"""SFT of Qwen2.5-7B-Instruct on worked causal solutions, the CauGym paper's SFT arm (verl's FSDP SFT trainer there).

    python -m caujax.train --config configs/qwen2p5_7b_sft.py --model.path=/ckpt/Qwen2.5-7B-Instruct \
        --run_dir=runs/qwen2p5_7b_sft

The paper's own SFT hyperparameters were not available when this preset was written; these are verl's SFT trainer
defaults (AdamW β=(0.9, 0.95), weight decay 0.01, 10% warmup, cosine, clip 1.0, η=1e-5), what running verl unchanged
gives; 3 epochs is our choice. CauGym's SFT file is not public (a Git LFS pointer), so the targets are worked
solutions of generated problems, as many as its RL training set (3,500), rendered by the causal engine.
Memory: 7.6B params x (4 B master + 8 B Adam moments + 4 B gradient) = 122 GB, sharded over fsdp; bf16 activations
with remat. tokens per step = 64 x 4096 = 262k; 3,500 examples / 64 = 55 steps per epoch, 3 epochs = 164 steps.

Planned memory (python -m caujax.plan --config configs/qwen2p5_7b_sft.py --mesh fsdp=8 --model.remat=X), GiB per
device: train step peak none 164, save_dots 64, save_attention 28, full 25. So remat='save_attention', the fastest
policy whose step leaves 20% of an 80 GB GPU free.
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig


def get_config() -> RunConfig:
    return RunConfig(
        method="sft",
        model=ModelSource(path="checkpoints/Qwen2.5-7B-Instruct", param_dtype="float32", compute_dtype="bfloat16",
                          remat="save_attention"),
        steps=164,
        run_dir="runs/qwen2p5_7b_sft",
        data=DataConfig(source="generated", num_examples=3500, seq_len=4096, batch_size=64, micro_batch_size=16),
        optim=OptimConfig(lr=1e-5, schedule="cosine", warmup_ratio=0.1, b1=0.9, b2=0.95, weight_decay=0.01,
                          max_grad_norm=1.0),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=50, keep=2),
    )
