"""Sampler/trainer agreement and rollout correction, shared by GRPO and PPO (LOSSES.md "Rollout correction").

log q_t is the log-prob the sampler drew token t with (temperature applied, sampling/methods.py); log π_old_t is the
trainer's recomputation for the same weights (or sg(log π_θ) on policy). In float32 with the same graph they agree
to about 1e-5; bf16 kernels or stale weights make them differ, and the correction keeps the gradient honest then.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from caujax.losses.params import RolloutParams

MAXIMA = ("agreement/logp_gap_max", "agreement/is_weight_max")


class Correction(NamedTuple):
    weight_BT: Array | None   # multiplies the policy term per token (token_truncate), else None
    keep_B1: Array            # 1 for rows kept in the loss, 0 for rows dropped (sequence_mask)
    metrics: dict             # agreement sums over completion tokens (and the two maxima, MAXIMA)
    by_rows: tuple            # metrics whose denominator is rows, not tokens


def rollout_correction(old_BT: Array, q_BT: Array, mask_BT: Array, rollout: RolloutParams) -> Correction:
    """old_BT = log π_old, q_BT = log q, mask_BT the float completion mask, all [B, T]; everything under
    stop_gradient. rollout.correction:
    - "token_truncate" (TIS; Tunix sampler_is="token", OpenRLHF tis): w_t = min(exp(log π_old - log q), C),
      C = rollout.correction_cap;
    - "sequence_mask" (NeMo-RL / verl / OpenRLHF seq-mask family): drop row i when
      Σ_t m |log π_old - log q| / Σ_t m > rollout.correction_threshold (absolute values, so +d and -d do not cancel);
    - "none": nothing.
    Metrics (sums; token means unless in `by_rows`): agreement/logp_gap_mean |log π_old - log q|,
    agreement/prob_gap_mean |π_old - q|, agreement/is_weight_mean exp(log π_old - log q) (uncapped), the maxima
    agreement/logp_gap_max and agreement/is_weight_max, and agreement/masked_fraction: tokens capped
    (token_truncate), rows dropped (sequence_mask), or 0.
    """
    sg = jax.lax.stop_gradient
    old_BT, q_BT = sg(old_BT), sg(q_BT)
    dtype = mask_BT.dtype
    gap_BT = jnp.abs(old_BT - q_BT)
    is_weight_BT = jnp.exp(old_BT - q_BT)
    rows_B = (mask_BT.sum(-1) > 0).astype(dtype)
    keep_B1, weight_BT, by_rows = jnp.ones((mask_BT.shape[0], 1), dtype), None, ()
    if rollout.correction == "token_truncate":
        weight_BT = jnp.minimum(is_weight_BT, rollout.correction_cap)
        corrected = ((is_weight_BT > rollout.correction_cap).astype(dtype) * mask_BT).sum()
    elif rollout.correction == "sequence_mask":
        row_gap_B = (gap_BT * mask_BT).sum(-1) / jnp.maximum(mask_BT.sum(-1), 1.0)
        keep_B1 = (row_gap_B <= rollout.correction_threshold).astype(dtype)[:, None]
        corrected, by_rows = ((1.0 - keep_B1[:, 0]) * rows_B).sum(), ("agreement/masked_fraction",)
    elif rollout.correction == "none":
        corrected = jnp.zeros((), dtype)
    else:
        raise ValueError(f"unknown rollout correction {rollout.correction!r}")
    tok = lambda x_BT: (x_BT * mask_BT).sum()
    on = mask_BT > 0
    # Maxima start at -inf, the identity of max: a micro-batch without completion tokens then leaves the batch's
    # maximum alone when micro-batches combine, and a batch without any reports NaN (Loss.metric_means), not 0.
    metrics = {"agreement/logp_gap_mean": tok(gap_BT),
               "agreement/prob_gap_mean": tok(jnp.abs(jnp.exp(old_BT) - jnp.exp(q_BT))),
               "agreement/is_weight_mean": tok(is_weight_BT),
               "agreement/logp_gap_max": jnp.where(on, gap_BT, -jnp.inf).max(),
               "agreement/is_weight_max": jnp.where(on, is_weight_BT, -jnp.inf).max(),
               "agreement/masked_fraction": corrected}
    return Correction(weight_BT, keep_B1, metrics, by_rows)
