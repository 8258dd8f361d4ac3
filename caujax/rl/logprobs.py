"""The trainer's own forward passes over a rollout batch: log π_old (GRPO with reused batches, PPO), V_old (PPO)
and log π_ref (PPO's KL penalty), all at the sampler's temperature.

They run micro-batch by micro-batch through `step.reference_fields`, the pass the train step itself uses for π_ref,
so a stored log π_old is bit-for-bit the log π_θ the first optimizer step on the batch computes.
"""
from __future__ import annotations

import functools

import jax
from flax import nnx

from caujax.losses.common import token_logprobs
from caujax.step import reference_fields, split_micro_batches


def _logp(model, mb, temperature: float, field: str):
    return {field: token_logprobs(model, mb["tokens_BT"], mb["mask_BT"], temperature=temperature,
                                  floor_BT=mb.get("support_floor_BT"))}


def _ppo(model, mb, temperature: float):
    from caujax.losses.ppo import rollout_fields
    return rollout_fields(model, mb["tokens_BT"], mb["mask_BT"], temperature, mb.get("support_floor_BT"))


KINDS = {"old": functools.partial(_logp, field="old_logp_BT"), "ref": functools.partial(_logp, field="ref_logp_BT"),
         "ppo": _ppo}


def scorer(kind: str, graphdef, mesh, num_micro_batches: int, temperature: float):
    """A jitted `(params, batch) -> {field: [B, T]}` for one optimizer batch {tokens_BT, mask_BT[, support_floor_BT]}
    (rows over data x fsdp), at the sampler's temperature and top-k/top-p support: kind "old" -> old_logp_BT,
    "ref" -> ref_logp_BT, "ppo" -> old_logp_BT and old_value_BT."""
    fn = functools.partial(KINDS[kind], temperature=temperature)

    def fields(params, batch):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            out = reference_fields(fn, nnx.merge(graphdef, params), split_micro_batches(batch, num_micro_batches))
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in out.items()}      # [M, B/M, T] -> [B, T]
    return jax.jit(fields)
