"""Supervised fine-tuning: token NLL over completion tokens (TRL SFTTrainer, loss_type "nll" or "dft")."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from caujax.losses.common import Loss, aggregate, token_logprobs, window_logprobs
from caujax.losses.params import SFTLossType, SFTParams


def sft_loss(logp_BT: Array, loss_mask_BT: Array, *, loss_type: SFTLossType = "nll") -> Loss:
    """Token-mean NLL over the completion tokens. Returned as (sum, token count), so that summing over
    micro-batches and dividing once gives TRL's per-optimizer-step token mean (its `num_items_in_batch`).

    Metrics (sums over the same tokens, denominator `count`): "nll" (always -log p, whatever the loss_type)."""
    nll_BT = -logp_BT
    per_tok_BT = nll_BT * jax.lax.stop_gradient(jnp.exp(logp_BT)) if loss_type == "dft" else nll_BT
    total, count = aggregate(per_tok_BT, loss_mask_BT, "token_mean")
    nll_sum, _ = aggregate(nll_BT, loss_mask_BT, "token_mean")
    return Loss(total=total, count=count, metrics={"nll": jax.lax.stop_gradient(nll_sum)})


def objective(model, batch: dict[str, Array], params: SFTParams) -> Loss:
    """With a `loss_index_BW` field (data.loss_window), the log-probs of the completion columns only: the same
    tokens, the same sums, a cheaper vocabulary projection."""
    if "loss_index_BW" in batch:
        logp_BW = window_logprobs(model, batch["tokens_BT"], batch["mask_BT"], batch["loss_index_BW"])
        return sft_loss(logp_BW, batch["loss_index_BW"] >= 0, loss_type=params.loss_type)
    logp_BT = token_logprobs(model, batch["tokens_BT"], batch["mask_BT"])
    return sft_loss(logp_BT, batch["loss_mask_BT"], loss_type=params.loss_type)
