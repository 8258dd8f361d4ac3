"""GRPO of DeepSeek-R1-Distill-Qwen-14B on CauGym's 3,500 online-RL problems (train/online_rl.parquet),
the paper's strongest arm.

    python -m caujax.train --config configs/r1_qwen_14b_grpo.py --model.path=/ckpt/DeepSeek-R1-Distill-Qwen-14B \
        --data.source=../shared/caugym/train/online_rl.parquet --run_dir=runs/r1_qwen_14b_grpo

CauGym did not publish its GRPO hyperparameters. Where each value comes from:
- clip ε_low 0.2 / ε_high 0.28, token-mean loss over the global batch, dynamic sampling of zero-spread groups, the soft
  overlong penalty (buffer 1/4 of the cap), no KL (β = 0, so no reference model is loaded) and η = 1e-6 with a short
  warmup and no decay: the DAPO recipe (Yu et al. 2025, sec. 4.1), which OpenRLHF's and verl's DAPO examples follow;
- G = 8 completions per prompt, group std with Bessel's correction + 1e-4, scale_rewards="group": TRL 1.9 GRPOConfig;
- T = 0.6, top_p 0.95: the CauGym evaluation protocol (DATA.md), so rollouts see the distribution that is scored;
- rewards: the strict causal reward (1 for an answer within 0.0005, LACK_CONDITION items need it) plus 0.1 for a
  well-formed final answer (rl/rewards.py);
- prompts up to 1,024 tokens, completions up to 4,096 (R1 models think at length): our choice for one node;
- 2 mini-batches of 128 completions per rollout of 32 prompts (DAPO uses 16 updates per rollout at 512 prompts; we
  scale down, keeping the rollout reused so stored old log-probs and the clip matter).
3,500 prompts / 32 per rollout = 109 rollouts per epoch; 2 epochs = 218 rollouts = 436 optimizer steps.

Planned memory (python -m caujax.plan --config configs/r1_qwen_14b_grpo.py --mesh fsdp=8 --model.remat=X), GiB per
device: train step peak none 181, save_dots 78, save_attention 46, full 42. So remat='save_attention', the fastest
policy whose step leaves 20% of an 80 GB GPU free. The rollout peak, 80 whatever the policy (train state, sampler
weights, KV cache), does not fit one 8 x 80 GB node: bench/README.md "Planner" has the meshes that do (fsdp=8 x
tensor=2: 40).
"""
from caujax.config import CheckpointConfig, DataConfig, MeshConfig, ModelSource, OptimConfig, RunConfig
from caujax.losses.params import GRPOParams, RolloutParams


def get_config() -> RunConfig:
    return RunConfig(
        method="grpo",
        model=ModelSource(path="checkpoints/DeepSeek-R1-Distill-Qwen-14B", param_dtype="float32",
                          compute_dtype="bfloat16", remat="save_attention"),
        steps=436,
        run_dir="runs/r1_qwen_14b_grpo",
        data=DataConfig(source="../shared/caugym/train/online_rl.parquet", num_examples=0, batch_size=128,
                        micro_batch_size=8),
        optim=OptimConfig(lr=1e-6, schedule="constant", warmup_ratio=0.05, max_grad_norm=1.0),
        grpo=GRPOParams(rollout=RolloutParams(n=8, temperature=0.6, top_p=0.95, max_prompt_length=1024,
                                              max_completion_length=4096, rewards=("causal", "format"),
                                              reward_weights=(1.0, 0.1), overlong_buffer=1024, log_every=10,
                                              stuck_rollouts=20),
                        beta=0.0, epsilon_low=0.2, epsilon_high=0.28, aggregation="token_mean",
                        num_iterations=1, mini_batches=2, dynamic_sampling=True, max_resample_rounds=3),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        checkpoint=CheckpointConfig(every_steps=20, keep=2),
    )
