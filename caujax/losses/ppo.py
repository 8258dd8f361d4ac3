"""PPO for language models: the clipped policy surrogate plus the clipped value loss (TRL experimental PPO, v1.9).

The model is an rl/critic.ActorCritic; its `forward` gives log-probs, entropies and values in one pass over the
batch (common.py "PPO" layout). Field names follow TRL 1.9's trl/experimental/ppo/ppo_trainer.py: our
old_logp_BT, advantage_BT, return_BT and old_value_BT are its mb_logprobs, mb_advantage, mb_return and mb_values.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from caujax.losses.common import Loss, aggregate
from caujax.losses.correction import MAXIMA, rollout_correction
from caujax.losses.params import PPOParams

_FIELDS = ("loss_mask_BT", "old_logp_BT", "advantage_BT", "return_BT", "old_value_BT")


def ppo_loss(logp_BT: Array, values_BT: Array, batch: dict[str, Array], params: PPOParams, *,
             entropy_BT: Array | None = None) -> Loss:
    """PPO's loss over the completion tokens; all inputs [B, T], aligned as common.py describes.

    With m = loss_mask_BT, ρ = exp(logp - old_logp), A = advantage, R = return, V_old = old_value, ε = cliprange,
    ε_v = cliprange_value, c_v = vf_coef:
      pg_t = max(-A ρ, -A clip(ρ, 1-ε, 1+ε))                          (Schulman et al. 2017, eq. 7, negated)
      vf_t = ½ max((V - R)², (clip(V, V_old - ε_v, V_old + ε_v) - R)²)    (value clipping of OpenAI baselines ppo2)
      loss = Σ m pg / Σ m  +  c_v Σ m vf / Σ m                          (TRL: pg_loss + vf_coef * vf_loss)
    Both terms are token means over the same mask, so the loss is returned as total = Σ m (pg + c_v vf) and
    count = Σ m: summed over micro-batches and divided once, it is the token mean over the whole batch, which is
    what TRL's masked_mean computes per micro-batch.

    The value mask is the loss mask. TRL's value mask (`padding_mask_p1`) reaches one token past the response
    because TRL adds the score at that position (sequence_length + 1), so the value there must be fitted too. Our
    values are aligned with the actions (column t is the state in which token t+1 is chosen, the column of its
    log-prob), the score goes to the last action, and rl/advantages.gae bootstraps V = 0 after it: every value that
    enters GAE is under the loss mask, and no position past the last action has one.

    Metrics (sums over the masked tokens, denominator `count`; all under stop_gradient): "policy_loss" (pg),
    "value_loss" (vf, the ½ included), "clip_ratio" (tokens where the clipped policy branch is strictly larger,
    TRL's pg_clipfrac), "value_clip_ratio" (likewise for the value loss, TRL's vf_clipfrac), "approx_kl"
    (½ (logp - old_logp)², TRL's approxkl), "ratio" (ρ), "entropy" (when entropy_BT is given), "values" (V) and
    "returns" (R). With batch["sampler_logp_BT"] (log q of the rollout), the sampler/trainer agreement metrics of
    losses/correction.py over the completion tokens, and params.rollout.correction applied to the policy term:
    token_truncate weights pg_t, sequence_mask drops rows from both terms and from `count`.
    """
    for name in _FIELDS:
        if batch[name].shape != logp_BT.shape:
            raise ValueError(f"PPO batch field {name} has shape {batch[name].shape}; logp_BT has {logp_BT.shape}")
    if values_BT.shape != logp_BT.shape:
        raise ValueError(f"values_BT {values_BT.shape} and logp_BT {logp_BT.shape} must have the same shape")
    dt = logp_BT.dtype
    on_BT = batch["loss_mask_BT"] != 0
    # Off the mask the log-ratio is 0 before the exp: old_logp may hold anything there (TRL writes 1.0), and an
    # inf ratio would turn the masked-out zeros into NaN gradients.
    log_ratio_BT = jnp.where(on_BT, logp_BT - batch["old_logp_BT"].astype(dt), 0.0)
    ratio_BT = jnp.exp(log_ratio_BT)
    adv_BT = batch["advantage_BT"].astype(dt)
    eps = params.cliprange
    pg1_BT = -adv_BT * ratio_BT
    pg2_BT = -adv_BT * jnp.clip(ratio_BT, 1.0 - eps, 1.0 + eps)
    pg_BT = jnp.maximum(pg1_BT, pg2_BT)
    corr = None
    if "sampler_logp_BT" in batch:
        mask_BT = on_BT.astype(dt)
        corr = rollout_correction(batch["old_logp_BT"].astype(dt), batch["sampler_logp_BT"].astype(dt), mask_BT,
                                  params.rollout)
        if corr.weight_BT is not None:
            pg_BT = pg_BT * corr.weight_BT
        on_BT = on_BT & (corr.keep_B1 > 0)

    values_BT = values_BT.astype(dt)
    return_BT, old_value_BT = batch["return_BT"].astype(dt), batch["old_value_BT"].astype(dt)
    eps_v = params.cliprange_value
    v_clipped_BT = jnp.clip(values_BT, old_value_BT - eps_v, old_value_BT + eps_v)
    vf1_BT = jnp.square(values_BT - return_BT)
    vf2_BT = jnp.square(v_clipped_BT - return_BT)
    vf_BT = 0.5 * jnp.maximum(vf1_BT, vf2_BT)

    total, count = aggregate(pg_BT + params.vf_coef * vf_BT, on_BT, "token_mean")
    sg = jax.lax.stop_gradient
    masked_sum = lambda x_BT: sg(jnp.where(on_BT, x_BT.astype(dt), 0.0).sum())
    metrics = {
        "policy_loss": masked_sum(pg_BT),
        "value_loss": masked_sum(vf_BT),
        "clip_ratio": masked_sum(pg2_BT > pg1_BT),
        "value_clip_ratio": masked_sum(vf2_BT > vf1_BT),
        "approx_kl": masked_sum(0.5 * jnp.square(log_ratio_BT)),
        "ratio": masked_sum(ratio_BT),
        "values": masked_sum(values_BT),
        "returns": masked_sum(return_BT),
    }
    if entropy_BT is not None:
        metrics["entropy"] = masked_sum(entropy_BT)
    if corr is None:
        return Loss(total=total, count=count, metrics=metrics)
    # Agreement is over every completion token (rows dropped by the correction included), not over `count`.
    metrics |= {k: sg(v) for k, v in corr.metrics.items()}
    metrics["completion_tokens"] = sg(mask_BT.sum())
    metrics["completion_rows"] = sg((mask_BT.sum(-1) > 0).astype(dt).sum())
    denominators = tuple((k, "completion_rows" if k in corr.by_rows else "completion_tokens")
                         for k in corr.metrics if k not in MAXIMA)
    return Loss(total=total, count=count, metrics=metrics, denominators=denominators, maxima=MAXIMA)


def objective(model, batch: dict[str, Array], params: PPOParams) -> Loss:
    """One ActorCritic forward (log-probs at the rollout temperature, entropies, values), then `ppo_loss`."""
    logp_BT, entropy_BT, values_BT = model.forward(batch["tokens_BT"], batch["mask_BT"],
                                                   temperature=params.rollout.temperature,
                                                   floor_BT=batch.get("support_floor_BT"))
    return ppo_loss(logp_BT, values_BT, batch, params, entropy_BT=entropy_BT)


def rollout_fields(model, tokens_BT: Array, mask_BT: Array, temperature: float,
                   floor_BT: Array | None = None) -> dict[str, Array]:
    """π_old and V_old at rollout time, under stop_gradient: {"old_logp_BT", "old_value_BT"}, both [B, T] float32
    (the rollout jits this with the sampled batch; GAE reads old_value_BT)."""
    logp_BT, _, values_BT = model.forward(tokens_BT, mask_BT, temperature=temperature, floor_BT=floor_BT)
    return jax.lax.stop_gradient({"old_logp_BT": logp_BT, "old_value_BT": values_BT})
