"""PPO of DeepSeek-R1-Distill-Qwen-14B on CauGym's 3,500 online-RL problems (train/online_rl.parquet).

    python -m caujax.train --config configs/r1_qwen_14b_ppo.py --model.path=/ckpt/DeepSeek-R1-Distill-Qwen-14B \
        --data.source=../shared/caugym/train/online_rl.parquet --run_dir=runs/r1_qwen_14b_ppo

CauGym did not publish PPO hyperparameters. Where each value comes from:
- clip 0.2, value clip 0.2, vf_coef 0.1, γ = 1, λ = 0.95, k1 KL penalty in the reward, advantage whitening: TRL 1.9's
  experimental PPOConfig; kl_coef 0.01 and η = 1e-6 for the actor: OpenRLHF's PPO examples (init_kl_coef 0.01,
  actor_learning_rate 5e-7 to 1e-6) rather than TRL's 0.05 / 3e-6, which were tuned for 53-token TL;DR summaries;
- critic: a separate critic model initialised from the policy (OpenRLHF and TRL both train a separate value model; the
  trunk head is the cheaper option, --ppo.critic=head); the critic shares the optimizer and learning rate here;
- one completion per prompt at T = 0.6, top_p 0.95 (CauGym's evaluation protocol), 2 epochs x 2 mini-batches;
- rewards: the strict causal reward plus 0.1 for a well-formed answer (rl/rewards.py);
  prompts up to 1,024 tokens, completions up to 4,096 (R1 models think at length): our choice.
3,500 prompts / 128 per rollout = 27 rollouts per pass over the data; 108 rollouts (about 4 passes) = 432
optimizer steps.

Planned memory (python -m caujax.plan --config configs/r1_qwen_14b_ppo.py --mesh fsdp=8 --model.remat=X), GiB per
device: train step peak none 362, save_dots 160, save_attention 94, full 84. No policy leaves 20% of an 80 GB GPU
free; remat='full' needs the least. The rollout peak, 90 whatever the policy (train state, sampler weights, KV
cache), does not fit one 8 x 80 GB node: bench/README.md "Planner" has the meshes that do (fsdp=8 x tensor=2: 45).
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.losses.params import PPOParams, RolloutParams


def get_config() -> RunConfig:
    return RunConfig(
        method="ppo",
        model=ModelSource(path="checkpoints/DeepSeek-R1-Distill-Qwen-14B", param_dtype="float32",
                          compute_dtype="bfloat16", remat="full"),
        steps=432,
        run_dir="runs/r1_qwen_14b_ppo",
        data=DataConfig(source="../shared/caugym/train/online_rl.parquet", num_examples=0, batch_size=64,
                        micro_batch_size=8),
        optim=OptimConfig(lr=1e-6, schedule="constant", warmup_ratio=0.05, max_grad_norm=1.0),
        ppo=PPOParams(rollout=RolloutParams(n=1, temperature=0.6, top_p=0.95, max_prompt_length=1024,
                                            max_completion_length=4096, rewards=("causal", "format"),
                                            reward_weights=(1.0, 0.1), log_every=10, stuck_rollouts=20),
                      critic="model", kl_coef=0.01, kl_estimator="k1", ppo_epochs=2, mini_batches=2),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=20, keep=2),
    )
