"""CPU-sized GRPO on the toy copy task: a random 2-layer Llama-style decoder, a 64-piece SentencePiece tokenizer
trained on the prompts, and "Copy the probability: 0.3608" prompts from the causal engine, rewarded by the dense
"copy" reward (rl/rewards.py). No network; the same code path as the large presets.

    python -m caujax.train --config configs/tiny_grpo.py --steps 40 --run_dir=runs/tiny_grpo

16 completions per step = 4 prompts x G = 4, completions of at most 8 tokens. A random-init model emits EOS only by
chance, so most completions are truncated: the fail-fast check on truncation is off (rollout.stuck_rollouts=0).
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.losses.params import GRPOParams, RolloutParams
from caujax.models import ModelConfig


def get_config() -> RunConfig:
    return RunConfig(
        method="grpo",
        model=ModelSource(arch=ModelConfig.tiny("llama", vocab_size=64), param_dtype="float32",
                          compute_dtype="float32"),
        steps=2,
        run_dir="runs/tiny_grpo",
        data=DataConfig(source="copy", num_examples=64, batch_size=16, micro_batch_size=8),
        optim=OptimConfig(lr=3e-3, schedule="constant", max_grad_norm=1.0),
        grpo=GRPOParams(rollout=RolloutParams(n=4, max_prompt_length=32, max_completion_length=8, rewards=("copy",),
                                              log_every=1, stuck_rollouts=0)),
        mesh=MeshConfig(data=1, fsdp=1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=1, keep=2),
    )
