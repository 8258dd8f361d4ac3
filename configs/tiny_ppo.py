"""CPU-sized PPO on the toy copy task (see tiny_grpo.py): value head on the policy trunk, KL penalty (k1) to the
initial policy in the reward, GAE (γ 1, λ 0.95), 2 epochs over each rollout of 16 completions.

    python -m caujax.train --config configs/tiny_ppo.py --steps 40 --run_dir=runs/tiny_ppo

One completion per prompt would leave the toy task's reward too noisy to read in 40 steps; n=2 keeps PPO's
per-completion advantages (GAE, no groups) while sampling more. kl_coef is 0.01, not TRL's 0.05: the copy reward
averages 0.05 at the start, and at 0.05 the penalty on a policy moving at lr 3e-3 outweighs it (measured: no
learning in 40 steps at 0.05, 0.05 -> 0.14 at 0.01). Truncation fail-fast is off (random init).
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.losses.params import PPOParams, RolloutParams
from caujax.models import ModelConfig


def get_config() -> RunConfig:
    return RunConfig(
        method="ppo",
        model=ModelSource(arch=ModelConfig.tiny("llama", vocab_size=64), param_dtype="float32",
                          compute_dtype="float32"),
        steps=2,
        run_dir="runs/tiny_ppo",
        data=DataConfig(source="copy", num_examples=64, batch_size=16, micro_batch_size=8),
        optim=OptimConfig(lr=3e-3, schedule="constant", max_grad_norm=1.0),
        ppo=PPOParams(rollout=RolloutParams(n=2, temperature=1.0, max_prompt_length=32, max_completion_length=8,
                                            rewards=("copy",), log_every=1, stuck_rollouts=0),
                      kl_coef=0.01, ppo_epochs=2, mini_batches=1),
        mesh=MeshConfig(data=1, fsdp=1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=2, keep=2),
    )
