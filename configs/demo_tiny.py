"""The demo pipeline at test size (tests/test_demo.py runs it end to end in CI): a random 2-layer decoder with a
SentencePiece tokenizer trained on the generated problems, LoRA SFT then LoRA GRPO, a few held-out items. It shows
that every stage runs, resumes and reports; it learns nothing worth reading.

    python -m caujax.demo --config configs/demo_tiny.py --run_dir=runs/demo_tiny
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.demo.config import DemoConfig
from caujax.losses.params import GRPOParams, RolloutParams
from caujax.models import ModelConfig
from caujax.models.config import LoRAConfig

ARCH = ModelConfig.tiny("llama", vocab_size=512)
MODEL = ModelSource(arch=ARCH, param_dtype="float32", compute_dtype="float32", lora=LoRAConfig(rank=4, alpha=8.0))


def get_config() -> DemoConfig:
    return DemoConfig(
        run_dir="runs/demo_tiny",
        arch=ARCH,
        train_items=32,
        heldout_items=8,
        sft=RunConfig(method="sft", model=MODEL, steps=4,
                      data=DataConfig(num_examples=0, seq_len=512, batch_size=4, loss_window=16),
                      optim=OptimConfig(lr=1e-2, schedule="constant"), mesh=MeshConfig(data=1),
                      checkpoint=CheckpointConfig(every_steps=2, keep=2)),
        grpo=RunConfig(method="grpo", model=MODEL, steps=2,
                       data=DataConfig(num_examples=0, batch_size=8, loss_window=16),
                       optim=OptimConfig(lr=1e-2, schedule="constant"), mesh=MeshConfig(data=1),
                       grpo=GRPOParams(rollout=RolloutParams(n=4, max_prompt_length=384, max_completion_length=16,
                                                             log_every=1, stuck_rollouts=0)),
                       checkpoint=CheckpointConfig(every_steps=1, keep=2)),
        eval_max_new_tokens=16,
        eval_batch_size=8,
        caugym_items=4,
    )
