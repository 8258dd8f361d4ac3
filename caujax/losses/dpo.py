"""Direct Preference Optimization (Rafailov et al. 2023) with its sigmoid/cDPO, IPO and hinge variants."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from caujax.losses.common import Loss, completion_logps
from caujax.losses.params import DPOLossType, DPOParams


def dpo_loss(logp_c_B: Array, logp_r_B: Array, ref_c_B: Array, ref_r_B: Array, *, beta: float,
             loss_type: DPOLossType = "sigmoid", label_smoothing: float = 0.0,
             len_c_B: Array | None = None, len_r_B: Array | None = None) -> Loss:
    """Per-pair DPO losses, summed; count = number of pairs. Inputs are summed completion log-probs, shape [B].

    With Δ_c = logp_c - ref_c, Δ_r = logp_r - ref_r and δ = Δ_c - Δ_r:
    - sigmoid: -(1-ε) log σ(βδ) - ε log σ(-βδ)                      (DPO eq. 7; cDPO when ε > 0)
    - ipo:     (Δ_c/len_c - Δ_r/len_r - 1/(2β))²                     (IPO eq. 17 on per-token averaged log-ratios,
               as TRL does; lengths are completion token counts clamped at >= 1, and must be given)
    - hinge:   relu(1 - βδ)
    Metrics (sums over pairs, denominator `count`): rewards/chosen = βΔ_c, rewards/rejected = βΔ_r,
    rewards/margins, rewards/accuracies (βΔ_c > βΔ_r), logps/chosen, logps/rejected.
    """
    delta_c_B = logp_c_B - ref_c_B
    delta_r_B = logp_r_B - ref_r_B
    margin_B = beta * (delta_c_B - delta_r_B)
    if loss_type == "sigmoid":
        per_pair_B = (-(1.0 - label_smoothing) * jax.nn.log_sigmoid(margin_B)
                      - label_smoothing * jax.nn.log_sigmoid(-margin_B))
    elif loss_type == "ipo":
        if len_c_B is None or len_r_B is None:
            raise ValueError("dpo_loss with loss_type 'ipo' needs the completion lengths len_c_B and len_r_B")
        avg_delta_B = (delta_c_B / jnp.maximum(len_c_B, 1).astype(delta_c_B.dtype)
                       - delta_r_B / jnp.maximum(len_r_B, 1).astype(delta_r_B.dtype))
        per_pair_B = (avg_delta_B - 1.0 / (2.0 * beta)) ** 2
    elif loss_type == "hinge":
        per_pair_B = jax.nn.relu(1.0 - margin_B)
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}")
    sg = jax.lax.stop_gradient
    reward_c_B, reward_r_B = sg(beta * delta_c_B), sg(beta * delta_r_B)
    metrics = {
        "rewards/chosen": reward_c_B.sum(),
        "rewards/rejected": reward_r_B.sum(),
        "rewards/margins": (reward_c_B - reward_r_B).sum(),
        "rewards/accuracies": (reward_c_B > reward_r_B).astype(reward_c_B.dtype).sum(),
        "logps/chosen": sg(logp_c_B).sum(),
        "logps/rejected": sg(logp_r_B).sum(),
    }
    return Loss(total=per_pair_B.sum(), count=jnp.asarray(per_pair_B.shape[0], per_pair_B.dtype), metrics=metrics)


def _split_pairs(x_B2, name: str):
    """Rows [0, B) are chosen, rows [B, 2B) rejected (the common.py batch layout)."""
    if x_B2.shape[0] % 2:
        raise ValueError(f"DPO batch field {name} has {x_B2.shape[0]} rows; expected an even number, "
                         f"[chosen; rejected] stacked along the batch")
    half = x_B2.shape[0] // 2
    return x_B2[:half], x_B2[half:]


def reference_logps(ref_model, batch: dict[str, Array], params=None) -> dict[str, Array]:
    """The reference fields of a DPO batch: the same forward as the policy's, under stop_gradient (STYLE 19)."""
    logp_B2 = jax.lax.stop_gradient(completion_logps(ref_model, batch["tokens_BT"], batch["mask_BT"],
                                                     batch["loss_mask_BT"]))
    ref_c_B, ref_r_B = _split_pairs(logp_B2, "tokens_BT")
    return {"ref_chosen_B": ref_c_B, "ref_rejected_B": ref_r_B}


def objective(model, batch: dict[str, Array], params: DPOParams) -> Loss:
    """One forward pass over the 2B stacked rows, then `dpo_loss` on the chosen/rejected halves."""
    logp_B2 = completion_logps(model, batch["tokens_BT"], batch["mask_BT"], batch["loss_mask_BT"])
    logp_c_B, logp_r_B = _split_pairs(logp_B2, "tokens_BT")
    # IPO lengths: completion tokens of each row. TRL counts its (token-aligned) completion_mask, which is the same
    # number whenever the prompt is non-empty.
    len_c_B, len_r_B = _split_pairs(batch["loss_mask_BT"].sum(-1), "loss_mask_BT")
    return dpo_loss(logp_c_B, logp_r_B, batch["ref_chosen_B"], batch["ref_rejected_B"], beta=params.beta,
                    loss_type=params.loss_type, label_smoothing=params.label_smoothing,
                    len_c_B=len_c_B, len_r_B=len_r_B)
