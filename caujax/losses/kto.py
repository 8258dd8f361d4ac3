"""Kahneman-Tversky Optimization (Ethayarajh et al. 2024), with TRL's KL reference point from mismatched pairs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from caujax.losses.common import Loss, completion_logps
from caujax.losses.params import KTOParams

# Metrics averaged over one class of rows rather than all of them (Loss.metric_means).
DENOMINATORS = (("rewards/chosen", "n_desirable"), ("logps/chosen", "n_desirable"),
                ("rewards/rejected", "n_undesirable"), ("logps/rejected", "n_undesirable"))


def kl_stats(logp_kl_B: Array, ref_kl_B: Array) -> tuple[Array, Array]:
    """(sum, count) of the log-ratios on the mismatched pairs, detached. Sums, so that kto.global_fields can add them over
    every micro-batch (and host) before forming the reference point."""
    ratio_B = jax.lax.stop_gradient(logp_kl_B - ref_kl_B)
    return ratio_B.sum(), jnp.asarray(ratio_B.shape[0], ratio_B.dtype)


def reference_point(kl_sum: Array, kl_count: Array) -> Array:
    """z0 = max(0, mean over the batch of logπθ(y'|x) - logπref(y'|x)), detached (KTO eq. 6, TRL's estimate)."""
    return jax.lax.stop_gradient(jnp.maximum(kl_sum / jnp.maximum(kl_count, 1.0), 0.0))


def kto_loss(logp_B: Array, ref_logp_B: Array, label_B: Array, z0: Array, *, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> Loss:
    """KTO eq. 7 with Δ = logp - ref_logp and reference point z0 (from `reference_point`):
    desirable L_D = 1 - σ(β(Δ - z0)), undesirable L_U = 1 - σ(β(z0 - Δ)).
    total = λ_D ΣL_D + λ_U ΣL_U and count = n_D + n_U, which is TRL's nanmean over the weighted losses.

    z0 is an input, not computed here: TRL averages the KL term over the whole (all-process) batch, so with gradient
    accumulation it must come from every micro-batch of the optimizer step, which `global_fields` sees (the step calls it before the loss).
    Metrics (sums): rewards/chosen and logps/chosen over desirable rows (denominator n_desirable),
    rewards/rejected and logps/rejected over undesirable rows (denominator n_undesirable), kl = z0 * count
    (denominator `count`, so that it averages back to z0). A class with no rows in the global batch has no mean:
    its two metrics are NaN in `Loss.metric_means` and absent from that metrics line, never 0."""
    desirable_B = label_B.astype(jnp.bool_)
    delta_B = logp_B - ref_logp_B
    loss_d_B = 1.0 - jax.nn.sigmoid(beta * (delta_B - z0))
    loss_u_B = 1.0 - jax.nn.sigmoid(beta * (z0 - delta_B))
    per_row_B = jnp.where(desirable_B, desirable_weight * loss_d_B, undesirable_weight * loss_u_B)
    count = jnp.asarray(per_row_B.shape[0], per_row_B.dtype)
    sg = jax.lax.stop_gradient
    reward_B, logp_sg_B = sg(beta * delta_B), sg(logp_B)
    zero = jnp.zeros_like(reward_B)
    metrics = {
        "rewards/chosen": jnp.where(desirable_B, reward_B, zero).sum(),
        "rewards/rejected": jnp.where(desirable_B, zero, reward_B).sum(),
        "logps/chosen": jnp.where(desirable_B, logp_sg_B, zero).sum(),
        "logps/rejected": jnp.where(desirable_B, zero, logp_sg_B).sum(),
        "n_desirable": desirable_B.astype(per_row_B.dtype).sum(),
        "n_undesirable": (~desirable_B).astype(per_row_B.dtype).sum(),
        "kl": sg(z0) * count,
    }
    return Loss(total=per_row_B.sum(), count=count, metrics=metrics, denominators=DENOMINATORS)


def reference_logps(ref_model, batch: dict[str, Array], params=None) -> dict[str, Array]:
    """The reference fields of a KTO batch, on the real and on the mismatched pairs, under stop_gradient."""
    ref_logp_B = completion_logps(ref_model, batch["tokens_BT"], batch["mask_BT"], batch["loss_mask_BT"])
    ref_kl_B = completion_logps(ref_model, batch["kl_tokens_BT"], batch["kl_mask_BT"], batch["kl_loss_mask_BT"])
    return {"ref_logp_B": jax.lax.stop_gradient(ref_logp_B), "ref_kl_B": jax.lax.stop_gradient(ref_kl_B)}


def policy_kl_stats(model, batch: dict[str, Array]) -> tuple[Array, Array]:
    """`kl_stats` of the policy on a batch's mismatched pairs; global_fields sums these over the global batch."""
    logp_kl_B = completion_logps(model, batch["kl_tokens_BT"], batch["kl_mask_BT"], batch["kl_loss_mask_BT"])
    return kl_stats(logp_kl_B, batch["ref_kl_B"])


def global_fields(model, micro_batches: dict[str, Array]) -> dict[str, Array]:
    """KTO's z0 over the whole global batch, every micro-batch included (TRL gathers it across processes), as
    the `kto_z0` field `objective` reads. `micro_batches` are stacked [M, ...]; forward passes only, detached."""
    kl_sum_M, kl_count_M = jax.lax.map(lambda mb: policy_kl_stats(model, mb), micro_batches)
    return {"kto_z0": reference_point(kl_sum_M.sum(), kl_count_M.sum())}


def objective(model, batch: dict[str, Array], params: KTOParams) -> Loss:
    """KTO on one micro-batch. The reference point is `batch["kto_z0"]` when the step put it there (from
    `global_fields`, over the global batch); otherwise this micro-batch's own, which equals TRL
    whenever a micro-batch is a whole per-device batch and there is one device."""
    if "kto_z0" in batch:
        z0 = jax.lax.stop_gradient(batch["kto_z0"])
    else:
        z0 = reference_point(*policy_kl_stats(model, batch))
    logp_B = completion_logps(model, batch["tokens_BT"], batch["mask_BT"], batch["loss_mask_BT"])
    return kto_loss(logp_B, batch["ref_logp_B"], batch["label_B"], z0, beta=params.beta,
                    desirable_weight=params.desirable_weight, undesirable_weight=params.undesirable_weight)
