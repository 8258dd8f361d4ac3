"""Group Relative Policy Optimization (Shao et al. 2024) and its variants: the clipped or CISPO surrogate, token or
sequence (GSPO) ratios, the KL to π_ref, rollout correction and the entropy bonus, as TRL 1.16's GRPOTrainer
`_compute_loss` computes them (LOSSES.md "GRPO", "Rollout correction")."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from caujax.losses.common import (Loss, aggregate, gather_loss_columns, hidden_logprobs, kl_estimate,
                                  target_logprobs, token_logprobs)
from caujax.losses.correction import MAXIMA, rollout_correction
from caujax.losses.params import GRPOParams


def grpo_loss(logp_BT: Array, batch: dict[str, Array], params: GRPOParams, *,
              entropy_BT: Array | None = None) -> Loss:
    """The GRPO loss of one micro-batch as sums: total / count over the global batch is TRL's loss.

    Inputs (common.py "GRPO" layout, all [B, T] aligned with logp_BT): logp_BT = log π_θ (differentiated),
    batch["loss_mask_BT"], batch["advantage_B"] (A_i), batch["sampler_logp_BT"] (log q), optional
    batch["old_logp_BT"] (log π_old; absent: π_old = sg(π_θ), so ρ = 1 in value and ∇ρ = ∇log π_θ), and
    batch["ref_logp_BT"] (log π_ref, read only when beta > 0). entropy_BT: H_t of π_θ, for the bonus and the metric.

    Per token t of completion i, with m the loss mask:
    - ratio: token level ρ_t = exp(log π_θ - log π_old); sequence level (GSPO, Zheng et al. 2025 eq. 7)
      log ρ_i = Σ_t m (log π_θ - log π_old) / max(Σ_t m, 1), a length MEAN, broadcast to its tokens, with the
      gradient flowing through every token's log π_θ (TRL's `log_importance_weights`).
    - surrogate "clip" (PPO; DeepSeekMath eq. 3): ℓ_t = -min(ρ'A, clip(ρ, 1-ε_low, 1+ε_high)·A), where
      ρ' = min(ρ, δ) when `delta` is set (TRL's two-sided clip, INTELLECT-2) and ρ' = ρ otherwise; with
      `dual_clip` c, ℓ_t = min(ℓ_t, -c·A) where A < 0 (dual-clip PPO, Ye et al. 2020: max(min(ρA, clip(ρ)A), cA)).
    - surrogate "cispo" (MiniMax-M1, 2025): ℓ_t = -sg(min(ρ, ε_high))·A·log π_θ. As in TRL, ε_high is the ratio's
      absolute upper bound, not 1 + ε_high (TRL suggests 5.0; its fallback ε_high = ε = 0.2 caps every ratio at 0.2).
    - rollout correction (LOSSES.md "Rollout correction", log π_old against log q): "token_truncate" multiplies
      the surrogate by w_t = sg(min(exp(log π_old - log q), C)), C = rollout.correction_cap, where TRL multiplies
      by its vLLM `importance_sampling_ratio` (before the KL term is added, so the KL is not reweighted);
      "sequence_mask" drops completion i from the loss and from its denominator (tokens, or rows for the
      per-sequence aggregations) when Σ_t m|log π_old - log q| / Σ_t m > rollout.correction_threshold.
    - KL, when beta > 0: ℓ_t += β·KL_t (`kl_estimator`: k1, k2 or k3), before aggregation, so it shares the
      surrogate's normaliser (TRL). With kl_bias_correction, KL_t·ρ_t (TRL 1.16 `use_bias_correction_kl`, its
      default there; off here, the KL of TRL 1.9 and of DeepSeekMath eq. 4).
    - aggregation (`params.aggregation`, common.aggregate): "token_mean" = TRL loss_type "dapo" (and "cispo"),
      Σ mℓ / N_tok over the global batch; "seq_mean_token_mean" = "grpo"; "seq_sum_const" = "dr_grpo",
      Σ mℓ / (B · rollout.max_completion_length).
    - entropy bonus, when entropy_coef > 0 (TRL 1.16 `entropy_coef`; LOSSES.md point 8): loss -= coef·H̄, H̄ the
      token mean of H_t whatever the aggregation. Under "token_mean" it is the global token mean (total gets
      -coef·Σ mH); under the per-sequence aggregations each micro-batch adds -coef·H̄_mb·count_mb, TRL's
      per-micro-batch token mean, so it is exact with one micro-batch or equal-sized ones, as TRL's is.

    Metrics, all under stop_gradient, sums with their own denominators (Loss.denominators), over the completion
    tokens of the loss mask (rows dropped by sequence_mask included, as TRL's are) or over the rows that have any:
    token means "kl" (beta > 0), "entropy" (entropy_BT given), "clip_ratio/low_mean" (ρ' < 1-ε_low and A < 0),
    "clip_ratio/high_mean" (ρ' > 1+ε_high and A > 0), "clip_ratio/region_mean" (either), with the delta-capped
    ρ' as TRL; at sequence level these three are fractions of rows, as TRL's are. "clip_ratio/dual_mean" (the
    dual clip binds) with dual_clip; "cispo_clip_ratio" (ρ > ε_high and A > 0, TRL) for cispo. Row means
    "advantage" and "completion_length" (tokens per row). Sampler agreement (log π_old against log q, so the
    trainer's own current log-probs when on policy): token means "agreement/logp_gap_mean" |log π_old - log q|,
    "agreement/prob_gap_mean" |π_old - q|, "agreement/is_weight_mean" exp(log π_old - log q) (uncapped);
    maxima "agreement/logp_gap_max", "agreement/is_weight_max" (Loss.maxima); "agreement/masked_fraction": the
    fraction of tokens whose weight was capped (token_truncate), of rows dropped (sequence_mask), or 0 (none).
    """
    sg = jax.lax.stop_gradient
    dtype = logp_BT.dtype
    rollout = params.rollout
    mask_BT = batch["loss_mask_BT"].astype(dtype)
    adv_B1 = batch["advantage_B"].astype(dtype)[:, None]
    old_BT = batch.get("old_logp_BT")
    old_BT = sg(logp_BT) if old_BT is None else old_BT.astype(dtype)
    q_BT = batch["sampler_logp_BT"].astype(dtype)
    eps_low, eps_high = params.epsilon_low, params.eps_high

    # --- ratio: per token, or one per sequence from the mean log-ratio (GSPO), broadcast to its tokens ----------
    log_ratio_BT = logp_BT - old_BT
    if params.importance_sampling_level == "token":
        log_w_BT = log_ratio_BT
    elif params.importance_sampling_level == "sequence":
        log_w_B1 = (log_ratio_BT * mask_BT).sum(-1, keepdims=True) / jnp.maximum(mask_BT.sum(-1, keepdims=True), 1.0)
        log_w_BT = jnp.broadcast_to(log_w_B1, logp_BT.shape)
    else:
        raise ValueError(f"unknown importance_sampling_level {params.importance_sampling_level!r}")
    ratio_BT = jnp.exp(log_w_BT)

    # --- surrogate ----------------------------------------------------------------------------------------------
    if params.surrogate == "clip":
        clipped_BT = jnp.clip(ratio_BT, 1.0 - eps_low, 1.0 + eps_high)
        capped_BT = ratio_BT if params.delta is None else jnp.minimum(ratio_BT, params.delta)
        per_tok_BT = -jnp.minimum(capped_BT * adv_B1, clipped_BT * adv_B1)
        if params.dual_clip is not None:
            dual_BT = (adv_B1 < 0) & (per_tok_BT > -params.dual_clip * adv_B1)
            per_tok_BT = jnp.where(dual_BT, -params.dual_clip * adv_B1, per_tok_BT)
    elif params.surrogate == "cispo":
        per_tok_BT = -sg(jnp.minimum(ratio_BT, eps_high)) * adv_B1 * logp_BT
    else:
        raise ValueError(f"unknown surrogate {params.surrogate!r}; expected 'clip' or 'cispo'")

    # --- rollout correction: π_old against the sampler's q (losses/correction.py) --------------------------------
    rows_B = mask_BT.sum(-1) > 0                       # rows with completion tokens; padding rows have none
    corr = rollout_correction(old_BT, q_BT, mask_BT, rollout)
    keep_B1 = corr.keep_B1
    if corr.weight_BT is not None:
        per_tok_BT = per_tok_BT * corr.weight_BT

    # --- KL to the reference, added per token before aggregation (TRL) ------------------------------------------
    if params.beta > 0:
        kl_BT = kl_estimate(logp_BT, batch["ref_logp_BT"].astype(dtype), params.kl_estimator)
        if params.kl_bias_correction:          # TRL use_bias_correction_kl: the KL of π_θ, sampled from π_old
            kl_BT = kl_BT * ratio_BT
        per_tok_BT = per_tok_BT + params.beta * kl_BT

    # --- aggregation over the kept rows -------------------------------------------------------------------------
    loss_mask_BT = mask_BT * keep_B1
    total, count = aggregate(per_tok_BT, loss_mask_BT, params.aggregation, const=rollout.max_completion_length)
    if params.aggregation != "token_mean":         # a dropped row leaves the per-sequence denominator too
        count = count - ((1.0 - keep_B1[:, 0]) * rows_B).sum()
    if params.entropy_coef:
        if entropy_BT is None:
            raise ValueError(f"entropy_coef={params.entropy_coef} needs entropy_BT")
        ent_sum = (entropy_BT.astype(dtype) * loss_mask_BT).sum()
        if params.aggregation == "token_mean":
            total = total - params.entropy_coef * ent_sum
        else:
            total = total - params.entropy_coef * ent_sum / jnp.maximum(loss_mask_BT.sum(), 1.0) * count

    # --- metrics ------------------------------------------------------------------------------------------------
    tok = lambda x_BT: sg((x_BT * mask_BT).sum())
    row = lambda x_B: sg((x_B * rows_B).sum())
    metrics = {"completion_tokens": mask_BT.sum(), "completion_rows": rows_B.astype(dtype).sum(),
               "advantage": row(adv_B1[:, 0]), "completion_length": mask_BT.sum(), **corr.metrics}
    by_rows = ["advantage", "completion_length", *corr.by_rows]
    if params.beta > 0:
        metrics["kl"] = tok(kl_BT)
    if entropy_BT is not None:
        metrics["entropy"] = tok(entropy_BT.astype(dtype))

    # Which ratios the clip bound: per token, or per row at sequence level (TRL's `global_masked_mean` on [B, 1]).
    if params.importance_sampling_level == "sequence":
        frac = lambda x_BT: row(x_BT[:, 0].astype(dtype))
    else:
        frac = lambda x_BT: tok(x_BT.astype(dtype))
    clip_names = []
    if params.surrogate == "clip":
        low_BT = (capped_BT < 1.0 - eps_low) & (adv_B1 < 0)
        high_BT = (capped_BT > 1.0 + eps_high) & (adv_B1 > 0)
        clip_names = ["clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"]
        metrics |= dict(zip(clip_names, (frac(low_BT), frac(high_BT), frac(low_BT | high_BT))))
        if params.dual_clip is not None:
            clip_names.append("clip_ratio/dual_mean")
            metrics["clip_ratio/dual_mean"] = frac(dual_BT)
    else:
        clip_names = ["cispo_clip_ratio"]
        metrics["cispo_clip_ratio"] = frac((ratio_BT > eps_high) & (adv_B1 > 0))
    if params.importance_sampling_level == "sequence":
        by_rows += clip_names

    metrics = {k: sg(v) for k, v in metrics.items()}
    maxima = MAXIMA
    denominators = tuple((k, "completion_rows" if k in by_rows else "completion_tokens")
                         for k in metrics if k not in maxima and k not in ("completion_tokens", "completion_rows"))
    return Loss(total=total, count=count, metrics=metrics, denominators=denominators, maxima=maxima)


def objective(model, batch: dict[str, Array], params: GRPOParams) -> Loss:
    """One forward pass; log-probs and entropies of softmax(logits / T) from the chunked vocabulary walk (the
    entropy costs one multiply-add per logit, so it is always computed for the "entropy" metric)."""
    tokens_BT, mask_BT = batch["tokens_BT"], batch["mask_BT"]
    h_BTD = model.hidden(tokens_BT, mask_BT)
    if "loss_index_BW" in batch:      # data.loss_window: the completion columns only, same sums (gather_loss_columns)
        index_BW = batch["loss_index_BW"]
        h_BWD, targets_BW, valid_BW, batch = gather_loss_columns(h_BTD, tokens_BT, mask_BT, index_BW, batch)
        logp_BW, entropy_BW = target_logprobs(model, h_BWD, targets_BW, valid_BW, entropy=True,
                                              temperature=params.rollout.temperature,
                                              floor_BT=batch.get("support_floor_BT"))
        return grpo_loss(logp_BW, batch, params, entropy_BT=entropy_BW)
    logp_BT, entropy_BT = hidden_logprobs(model, h_BTD, tokens_BT, mask_BT, temperature=params.rollout.temperature,
                                          entropy=True, floor_BT=batch.get("support_floor_BT"))
    return grpo_loss(logp_BT, batch, params, entropy_BT=entropy_BT)


def reference_logps(ref_model, batch: dict[str, Array], params: GRPOParams) -> dict[str, Array]:
    """The reference field of a GRPO batch: log π_ref at the sampling temperature, under stop_gradient (STYLE 19)."""
    ref_BT = token_logprobs(ref_model, batch["tokens_BT"], batch["mask_BT"], temperature=params.rollout.temperature,
                            floor_BT=batch.get("support_floor_BT"))
    return {"ref_logp_BT": jax.lax.stop_gradient(ref_BT)}
