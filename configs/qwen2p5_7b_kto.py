"""KTO of Qwen2.5-7B-Instruct on unpaired good/bad solutions, 1:1, the CauGym paper's KTO arm (rllm there).

    python -m caujax.train --config configs/qwen2p5_7b_kto.py --model.path=/ckpt/Qwen2.5-7B-Instruct \
        --run_dir=runs/qwen2p5_7b_kto

The paper's own KTO hyperparameters were not available when this preset was written; these are TRL's KTO defaults
(β=0.1, λ_D=λ_U=1, η=1e-6, linear decay) with 10% warmup. The paper enforces a 1:1 desirable:undesirable ratio,
which caujax.data.pairs gives (one worked and one wrong solution per problem), so λ_D n_D / (λ_U n_U) = 1 as KTO eq.
8 asks. z0 is estimated over the whole global batch of 64 rows (all micro-batches), from mismatched pairs rotated
within each micro-batch.
tokens per step = 64 x 4096; 7,000 examples / 64 = 109 steps per epoch, 2 epochs (our choice) = 218 steps.

Planned memory (python -m caujax.plan --config configs/qwen2p5_7b_kto.py --mesh fsdp=8 --model.remat=X), GiB per
device: train step peak none 165, save_dots 66, save_attention 30, full 27. So remat='save_attention', the fastest
policy whose step leaves 20% of an 80 GB GPU free.
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.losses.params import KTOParams


def get_config() -> RunConfig:
    return RunConfig(
        method="kto",
        model=ModelSource(path="checkpoints/Qwen2.5-7B-Instruct", param_dtype="float32", compute_dtype="bfloat16",
                          remat="save_attention"),
        steps=218,
        run_dir="runs/qwen2p5_7b_kto",
        data=DataConfig(source="generated", num_examples=3500, seq_len=4096, batch_size=64, micro_batch_size=16),
        optim=OptimConfig(lr=1e-6, schedule="linear", warmup_ratio=0.1, max_grad_norm=1.0),
        kto=KTOParams(beta=0.1, desirable_weight=1.0, undesirable_weight=1.0),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=50, keep=2),
    )
