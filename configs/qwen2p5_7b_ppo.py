"""PPO of Qwen2.5-7B-Instruct on CauGym's 3,500 online-RL problems (train/online_rl.parquet).

    python -m caujax.train --config configs/qwen2p5_7b_ppo.py --model.path=/ckpt/Qwen2.5-7B-Instruct \
        --data.source=../shared/caugym/train/online_rl.parquet --run_dir=runs/qwen2p5_7b_ppo

CauGym did not publish PPO hyperparameters. Where each value comes from:
- clip 0.2, value clip 0.2, vf_coef 0.1, γ = 1, λ = 0.95, k1 KL penalty in the reward, advantage whitening: TRL 1.9's
  experimental PPOConfig; kl_coef 0.01 and η = 1e-6 for the actor: OpenRLHF's PPO examples (init_kl_coef 0.01,
  actor_learning_rate 5e-7 to 1e-6) rather than TRL's 0.05 / 3e-6, which were tuned for 53-token TL;DR summaries;
- critic: a separate critic model initialised from the policy (OpenRLHF and TRL both train a separate value model; the
  trunk head is the cheaper option, --ppo.critic=head); the critic shares the optimizer and learning rate here;
- one completion per prompt at T = 0.6, top_p 0.95 (CauGym's evaluation protocol), 2 epochs x 2 mini-batches;
- rewards: the strict causal reward plus 0.1 for a well-formed answer (rl/rewards.py);
  prompts up to 1,024 tokens, completions up to 2,048: our choice.
3,500 prompts / 128 per rollout = 27 rollouts per pass over the data; 108 rollouts (about 4 passes) = 432
optimizer steps.

Planned memory (python -m caujax.plan --config configs/qwen2p5_7b_ppo.py --mesh fsdp=8 --model.remat=X), GiB per
device: train step peak none 147, save_dots 71, save_attention 44, full 41. So remat='save_attention', the fastest
policy whose step leaves 20% of an 80 GB GPU free. The rollout peak, 43 whatever the policy (train state, sampler
weights, KV cache), fits too (under the 67 GiB that launch/gpu.sh's default memory fraction, 0.9, leaves).
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.losses.params import PPOParams, RolloutParams


def get_config() -> RunConfig:
    return RunConfig(
        method="ppo",
        model=ModelSource(path="checkpoints/Qwen2.5-7B-Instruct", param_dtype="float32", compute_dtype="bfloat16",
                          remat="save_attention"),
        steps=432,
        run_dir="runs/qwen2p5_7b_ppo",
        data=DataConfig(source="../shared/caugym/train/online_rl.parquet", num_examples=0, batch_size=64,
                        micro_batch_size=8),
        optim=OptimConfig(lr=1e-6, schedule="constant", warmup_ratio=0.05, max_grad_norm=1.0),
        ppo=PPOParams(rollout=RolloutParams(n=1, temperature=0.6, top_p=0.95, max_prompt_length=1024,
                                            max_completion_length=2048, rewards=("causal", "format"),
                                            reward_weights=(1.0, 0.1), log_every=10, stuck_rollouts=20),
                      critic="model", kl_coef=0.01, kl_estimator="k1", ppo_epochs=2, mini_batches=2),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=20, keep=2),
    )
