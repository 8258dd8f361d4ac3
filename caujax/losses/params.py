"""Loss hyperparameters of every method, as plain dataclasses (no jax), so that a run's config can hold them.

Each class is the `--<method>.*` section of a RunConfig (caujax/methods.py ties a class to its method); the
docstrings name the paper's symbol and the TRL default of each field.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

SFTLossType = Literal["nll", "dft"]
DPOLossType = Literal["sigmoid", "ipo", "hinge"]


@dataclasses.dataclass(frozen=True)
class SFTParams:
    """loss_type: "nll" is -log p_t; "dft" (Wu et al. 2025, Dynamic Fine-Tuning eq. 10) is -stopgrad(p_t) log p_t."""

    loss_type: SFTLossType = "nll"

    def __post_init__(self):
        if self.loss_type not in ("nll", "dft"):
            raise ValueError(f"SFTParams.loss_type={self.loss_type!r}; expected 'nll' or 'dft'")


@dataclasses.dataclass(frozen=True)
class DPOParams:
    """beta: β of DPO eq. 7 (for IPO, the τ of Azar et al. eq. 17). TRL default 0.1.
    loss_type: "sigmoid" (DPO), "ipo" (Azar et al. 2023) or "hinge" (SLiC, Zhao et al. 2023).
    label_smoothing: ε of conservative DPO (cDPO, Mitchell 2023), sigmoid only. TRL 1.x has no smoothing in its
    sigmoid loss; at ε = 0 the two are the same function."""

    beta: float = 0.1
    loss_type: DPOLossType = "sigmoid"
    label_smoothing: float = 0.0

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"DPOParams.beta must be > 0, got {self.beta}")
        if self.loss_type not in ("sigmoid", "ipo", "hinge"):
            raise ValueError(f"DPOParams.loss_type={self.loss_type!r}; expected 'sigmoid', 'ipo' or 'hinge'")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"DPOParams.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing and self.loss_type != "sigmoid":
            raise ValueError(f"label_smoothing={self.label_smoothing} only applies to loss_type 'sigmoid', "
                             f"not {self.loss_type!r}")


@dataclasses.dataclass(frozen=True)
class KTOParams:
    """beta: β of KTO eq. 7 (TRL default 0.1). desirable_weight / undesirable_weight: λ_D and λ_U; with
    n_D != n_U the paper (eq. 8) suggests λ_D n_D / (λ_U n_U) in [1, 4/3]."""

    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"KTOParams.beta must be > 0, got {self.beta}")
        for name in ("desirable_weight", "undesirable_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"KTOParams.{name} must be >= 0, got {getattr(self, name)}")


# --- online RL (GRPO, PPO) -----------------------------------------------------------------------------------------
KLEstimator = Literal["k1", "k2", "k3"]
Surrogate = Literal["clip", "cispo"]
RLAggregation = Literal["token_mean", "seq_mean_token_mean", "seq_sum_const"]
ScaleRewards = Literal["group", "batch", "none"]
RolloutCorrection = Literal["none", "token_truncate", "sequence_mask"]


@dataclasses.dataclass(frozen=True)
class RolloutParams:
    """How completions are sampled and rewarded (shared by GRPO and PPO; rl/rollout.py, rl/rewards.py).

    n: completions per prompt, G (TRL GRPO `num_generations` = 8; a group needs >= 2 for GRPO).
    temperature / top_p / top_k: the sampler's distribution; log-probs everywhere are those of softmax(logits / T)
    (TRL divides by T too); top-k/top-p restrict which tokens can be drawn (sampling/methods.py).
    max_prompt_length: prompt tokens; a longer prompt is refused by name, never cut (its question would be lost).
    max_completion_length: L_max, completion tokens (TRL v1.9.0: 256). seq_len of a row = the two added.
    rewards / reward_weights: reward functions by name, summed with the weights (None = all 1; TRL `reward_funcs` /
    `reward_weights`): the built-ins of rl/rewards.py ("causal", "format", "copy") or functions of `reward_file`.
    reward_file: a Python file whose functions `(prompts, completions, items) -> float array [R]` `rewards` may name.
    overlong_buffer / overlong_penalty: L_b of DAPO's soft overlong penalty (Yu et al. 2025, eq. 13; 0 = off) and
    its factor.
    mask_truncated_completions: completions cut at L_max leave the loss and its denominator (DAPO, TRL).
    correction / correction_cap / correction_threshold: rollout correction for sampler/trainer mismatch (caujax/losses/correction.py): "token_truncate"
    multiplies each token's loss by min(π_old/q, correction_cap) (TIS, cap 2 as in Tunix/OpenRLHF); "sequence_mask"
    drops sequences whose mean |log π_old - log q| exceeds correction_threshold.
    log_every: a rollout table (prompt, completion, reward) is appended to <run_dir>/rollouts.jsonl every this many
    rollouts (0 = never). stuck_rollouts: fail when this many rollouts in a row have >= 95% truncated completions
    or >= 95% zero-spread groups (0 = never; a random-init model never emits EOS, so tiny presets turn it off).
    """

    n: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_prompt_length: int = 512
    max_completion_length: int = 256
    rewards: tuple[str, ...] = ("causal", "format")
    reward_weights: tuple[float, ...] | None = None
    reward_file: str | None = None
    overlong_buffer: int = 0
    overlong_penalty: float = 1.0
    mask_truncated_completions: bool = False
    correction: RolloutCorrection = "none"
    correction_cap: float = 2.0
    correction_threshold: float = 0.1
    log_every: int = 10
    stuck_rollouts: int = 20

    def __post_init__(self):
        if self.n < 1 or self.max_prompt_length < 1 or self.max_completion_length < 1:
            raise ValueError(f"rollout.n={self.n}, max_prompt_length={self.max_prompt_length} and "
                             f"max_completion_length={self.max_completion_length} must be >= 1")
        if self.temperature <= 0:
            raise ValueError(f"rollout.temperature={self.temperature} must be > 0: training needs the log-probs of a "
                             f"sampled distribution, and T = 0 is greedy decoding")
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"rollout.top_p={self.top_p} must be in (0, 1] and rollout.top_k={self.top_k} >= 0")
        if not self.rewards:
            raise ValueError("rollout.rewards is empty: name at least one reward function")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"rollout.reward_weights has {len(self.reward_weights)} weights for "
                             f"{len(self.rewards)} rewards {self.rewards}")
        if not 0 <= self.overlong_buffer < self.max_completion_length:
            raise ValueError(f"rollout.overlong_buffer={self.overlong_buffer} must be in [0, max_completion_length="
                             f"{self.max_completion_length})")
        if self.correction_cap <= 0 or self.correction_threshold <= 0:
            raise ValueError("rollout.correction_cap and correction_threshold must be > 0")
        if self.log_every < 0 or self.stuck_rollouts < 0:
            raise ValueError("rollout.log_every and rollout.stuck_rollouts must be >= 0")


@dataclasses.dataclass(frozen=True)
class GRPOParams:
    """Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath eq. 3) and its variants; defaults are
    TRL 1.9 GRPOConfig's unless noted.

    beta: β of the KL to π_ref; 0 (TRL default since v0.19) loads no reference model at all. DeepSeek-R1: 0.001.
    kl_estimator: k1 = log π - log π_ref, k2 = ½(log π - log π_ref)², k3 = exp(log π_ref - log π) - (log π_ref -
    log π) - 1 (Schulman 2020; TRL's only one). kl_bias_correction: multiply KL_t by the ratio ρ_t, an unbiased
    estimate of KL(π_θ || π_ref) from samples of π_old (TRL `use_bias_correction_kl`: False in 1.9, True in 1.16).
    epsilon_low / epsilon_high: the clip range [1 - ε_low, 1 + ε_high] (DAPO's clip-higher uses ε_high = 0.28);
    epsilon_high None = ε_low. delta: TRL's two-sided clip, ρ <- min(ρ, δ) in the unclipped branch (INTELLECT-2).
    dual_clip: c > 1 of dual-clip PPO (Ye et al. 2020): for A < 0 the loss is capped at -c·A. None = off.
    importance_sampling_level: "token" ratios, or "sequence": one ratio per completion from the length-MEAN of its
    log-ratios (GSPO, Zheng et al. 2025, eq. 7), broadcast to its tokens.
    surrogate: "clip" (PPO's clipped objective) or "cispo" (MiniMax-M1: -sg(min(ρ, ε_high))·A·log π, where ε_high
    is an absolute cap on the ratio as in TRL, which suggests 5.0; the fallback ε_high = ε_low = 0.2 would cap
    every ratio at 0.2, so set it).
    aggregation: "token_mean" over the whole global batch (TRL loss_type="dapo", the default), "seq_mean_token_mean"
    (loss_type="grpo", the paper's form), "seq_sum_const" (loss_type="dr_grpo": sum / (B · max_completion_length)).
    scale_rewards / std_ddof / advantage_epsilon: A = (r - mean_g r) / (std + ε), std over the group ("group"), the
    whole rollout batch ("batch") or not at all ("none", Dr.GRPO); ddof 1 = Bessel (TRL), 0 = EasyDeL.
    advantage_estimator: "grpo" (group normalisation) or "rloo" (A_i = r_i - mean_{j≠i} r_j, Ahmadian et al. 2024).
    num_iterations: μ, optimizer passes over each rollout batch (old log-probs stored when > 1 or mini_batches > 1).
    mini_batches: optimizer steps per pass; a rollout samples mini_batches x data.batch_size completions.
    dynamic_sampling / max_resample_rounds: drop zero-spread groups and sample fresh prompts until the batch is
    full (DAPO), at most max_resample_rounds extra rounds, then train on a logged partial batch.
    entropy_coef: loss -= coef · mean token entropy (TRL 0.0).
    rollout: sampling and rewards (RolloutParams).
    """

    rollout: RolloutParams = RolloutParams()
    beta: float = 0.0
    kl_estimator: KLEstimator = "k3"
    kl_bias_correction: bool = False
    epsilon_low: float = 0.2
    epsilon_high: float | None = None
    delta: float | None = None
    dual_clip: float | None = None
    importance_sampling_level: Literal["token", "sequence"] = "token"
    surrogate: Surrogate = "clip"
    aggregation: RLAggregation = "token_mean"
    scale_rewards: ScaleRewards = "group"
    std_ddof: int = 1
    advantage_epsilon: float = 1e-4
    advantage_estimator: Literal["grpo", "rloo"] = "grpo"
    num_iterations: int = 1
    mini_batches: int = 1
    dynamic_sampling: bool = False
    max_resample_rounds: int = 3
    entropy_coef: float = 0.0

    def __post_init__(self):
        if self.rollout.n < 2:
            raise ValueError(f"GRPO compares the completions of a prompt with each other: rollout.n="
                             f"{self.rollout.n}, it needs at least 2 per prompt (TRL default 8)")
        if self.beta < 0 or self.epsilon_low < 0 or (self.epsilon_high is not None and self.epsilon_high < 0):
            raise ValueError("grpo.beta, epsilon_low and epsilon_high must be >= 0")
        if self.delta is not None and self.delta <= 1:
            raise ValueError(f"grpo.delta={self.delta} must be > 1 (it caps the ratio from above)")
        if self.dual_clip is not None and self.dual_clip <= 1:
            raise ValueError(f"grpo.dual_clip={self.dual_clip} must be > 1 (Ye et al. 2020)")
        if self.std_ddof not in (0, 1) or self.advantage_epsilon < 0:
            raise ValueError(f"grpo.std_ddof={self.std_ddof} must be 0 or 1, advantage_epsilon >= 0")
        if self.num_iterations < 1 or self.mini_batches < 1 or self.max_resample_rounds < 0:
            raise ValueError("grpo.num_iterations and mini_batches must be >= 1, max_resample_rounds >= 0")

    @property
    def eps_high(self) -> float:
        return self.epsilon_low if self.epsilon_high is None else self.epsilon_high

    @property
    def steps_per_rollout(self) -> int:
        """Optimizer steps taken on each rollout batch: num_iterations x mini_batches."""
        return self.num_iterations * self.mini_batches

    @property
    def on_policy(self) -> bool:
        """One optimizer step per rollout: π_old = sg(π_θ), the ratio is exactly 1 (TRL's default)."""
        return self.steps_per_rollout == 1


@dataclasses.dataclass(frozen=True)
class PPOParams:
    """PPO for language models (Ouyang et al. 2022; Huang et al. 2024, "The N+ implementation details of RLHF with
    PPO"); defaults are TRL 1.9's experimental PPOConfig unless noted.

    critic: "head", a scalar value head on the policy's own trunk (one forward gives log-probs and values), or
    "model", a separate critic decoder initialised from the policy's weights (OpenRLHF/TRL's separate value model).
    kl_coef / kl_estimator: the per-token penalty r_t = -kl_coef · KL_t in the reward (k1, TRL default; or k3).
    kl_coef 0 loads no reference model.
    cliprange: ε of the clipped policy objective (TRL 0.2).
    cliprange_value: ε of the clipped value loss (TRL 0.2).
    vf_coef: c_v in loss = pg + c_v · vf (TRL 0.1).
    gamma / lam: γ and λ of GAE (Schulman et al. 2016); TRL 1.0 and 0.95.
    whiten_rewards: whiten the per-token rewards (no mean shift) before GAE; advantages are always whitened (masked
    mean/var, Bessel), as in TRL.
    ppo_epochs / mini_batches: passes over each rollout batch, and optimizer steps per pass: ppo_epochs x
    mini_batches optimizer steps per rollout batch (TRL num_ppo_epochs=4, num_mini_batches=1).
    missing_eos_penalty: subtracted from the score of a completion that never ended (TRL; None = off).
    rollout: sampling and rewards; PPO defaults to one completion per prompt at T = 0.7 (TRL).
    """

    rollout: RolloutParams = RolloutParams(n=1, temperature=0.7)
    critic: Literal["head", "model"] = "head"
    kl_coef: float = 0.05
    kl_estimator: Literal["k1", "k3"] = "k1"
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    whiten_rewards: bool = False
    ppo_epochs: int = 4
    mini_batches: int = 1
    missing_eos_penalty: float | None = None

    def __post_init__(self):
        if self.kl_coef < 0 or self.cliprange <= 0 or self.cliprange_value <= 0 or self.vf_coef < 0:
            raise ValueError("ppo.kl_coef and vf_coef must be >= 0, cliprange and cliprange_value > 0")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError(f"ppo.gamma={self.gamma} and ppo.lam={self.lam} must be in [0, 1]")
        if self.ppo_epochs < 1 or self.mini_batches < 1:
            raise ValueError("ppo.ppo_epochs and ppo.mini_batches must be >= 1")

    @property
    def steps_per_rollout(self) -> int:
        return self.ppo_epochs * self.mini_batches

    @property
    def on_policy(self) -> bool:
        return False                    # PPO always stores π_old and V_old: its epochs reuse the rollout
