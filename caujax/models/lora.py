"""LoRA: low-rank adapters on the decoder's projections (Hu et al. 2021, "LoRA", eq. 3 and the alpha / r
scaling of section 4.1), with PEFT's conventions.

A targeted projection y = x W becomes y = x W + (alpha / rank) * dropout(x) A B, with A [in..., r] drawn like
PEFT's default (kaiming-uniform with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))) and B [r, out...] zero, so a
fresh adapter leaves the model's output exactly unchanged. Adapters are stacked [L, ...] like the layers they sit
on, and are `nnx.LoRAParam` variables: the train step differentiates and optimizes only them (and any head built
around the decoder, e.g. PPO's value head), the base weights are frozen in the same params tree.

What follows from "the base is frozen":
- the reference model is the same weights with the adapters off (`adapter_off`: B = 0), never a second copy;
- checkpoints hold only the trainable part (`trainable`) and its optimizer state;
- export merges W + (alpha / rank) A B into a plain decoder (`merge_adapters`), or writes a PEFT adapter directory
  (models/peft_export.py).

Adapter dropout acts only inside the train step's objective: π_old, π_ref, the sampler and evaluation see the
adapters without it, so with dropout > 0 an on-policy GRPO/PPO ratio is not exactly 1 (PEFT + TRL behave alike).
PPO with critic="model" copies the whole policy, frozen base included, for its critic (twice the base's memory).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from caujax.models.config import TARGETS, LoRAConfig  # noqa: F401  (LoRAConfig: re-exported)
from caujax.models.layout import path_parts
from caujax.models.ops import dense

# A decoder's own parameters sit under these names; anything else in a params tree (a value head) is not frozen.
_DECODER_PARTS = ("embed", "layers", "final_norm", "lm_head")


class Adapter(nnx.Module):
    """A [L, *in_shape, r] and B [L, r, *out_shape] for one stacked projection W [L, *in_shape, *out_shape]. Kept in
    float32 whatever the base's dtype (PEFT's autocast_adapter_dtype): bf16 adapters would round every small update
    away; they enter the matmuls cast to the compute dtype like any weight."""

    def __init__(self, in_shape, in_axes, out_shape, out_axes, lora: LoRAConfig, rngs: nnx.Rngs, stack: int):
        r, bound = lora.rank, math.prod(in_shape) ** -0.5
        a = jax.random.uniform(rngs.params(), (stack, *in_shape, r), jnp.float32, -bound, bound)
        self.a = nnx.LoRAParam(a, out_sharding=("layers", *in_axes, None))
        self.b = nnx.LoRAParam(jnp.zeros((stack, r, *out_shape), jnp.float32), out_sharding=("layers", None, *out_axes))
        self.scale, self.dropout = lora.scale, lora.dropout

    def __call__(self, x, contract: int, key):
        """(alpha / r) * dropout(x) A B for one layer's slice (x [..., *in_shape]); dropout only with a key."""
        dt = x.dtype
        if self.dropout and key is not None:
            keep = jax.random.bernoulli(key, 1.0 - self.dropout, x.shape)
            x = jnp.where(keep, x / (1.0 - self.dropout), 0.0).astype(dt)
        h = dense(x, self.a[...].astype(dt), contract)
        return dense(h, self.b[...].astype(dt)) * jnp.asarray(self.scale, dt)


def project(module: nnx.Module, name: str, x, contract: int = 1, key=None):
    """x through the projection `module.<name>` (one layer's slice), plus its adapter `module.<name>_lora` if any.
    `key` (a PRNG key or None) draws the adapter's dropout; each projection folds in its own index."""
    y = dense(x, getattr(module, name)[...].astype(x.dtype), contract)
    adapter = getattr(module, f"{name}_lora", None)
    if adapter is None:
        return y
    key = None if key is None else jax.random.fold_in(key, list(TARGETS).index(name))
    return y + adapter(x, contract, key)


def adapters_of(cfg, name: str, in_shape, in_axes, out_shape, out_axes, rngs, stack):
    """The Adapter for projection `name` when cfg.lora targets it, else None."""
    lora = cfg.lora
    if lora is None or not lora.rank or name not in lora.targets:
        return None
    return Adapter(in_shape, in_axes, out_shape, out_axes, lora, rngs, stack)


# --- the params tree: trainable part, frozen part, adapters off ---------------------------------------------------

def _is_frozen(path, variable) -> bool:
    """A base decoder weight of a tree that has adapters (not a LoRAParam, under a decoder's own names)."""
    return not isinstance(variable, nnx.LoRAParam) and any(n in _DECODER_PARTS for n in path_parts(path))


def has_adapters(params: nnx.State) -> bool:
    """Does the params tree hold any LoRA adapter (nnx.LoRAParam)?"""
    lora, _ = nnx.split_state(params, nnx.LoRAParam, ...)
    return bool(jax.tree.leaves(lora))


def split_trainable(params: nnx.State) -> tuple[nnx.State, nnx.State]:
    """(trainable, frozen). Without adapters every parameter is trainable and `frozen` is empty."""
    if not has_adapters(params):
        return params, nnx.State({})
    frozen, trainable = nnx.split_state(params, _is_frozen, ...)
    return trainable, frozen


def trainable(params: nnx.State) -> nnx.State:
    """The part of the params tree that the optimizer updates and a checkpoint stores (split_trainable)."""
    return split_trainable(params)[0]


def join(trainable_part: nnx.State, frozen: nnx.State) -> nnx.State:
    """The whole params tree again (the inverse of split_trainable)."""
    return nnx.merge_state(frozen, trainable_part) if jax.tree.leaves(frozen) else trainable_part


def adapter_off(params: nnx.State) -> nnx.State:
    """The same tree with every B = 0: the base model's outputs exactly (x W + s * (x A) 0 = x W), the reference
    π_ref of a LoRA run. Base weights are the same arrays (no copy)."""
    lora, rest = nnx.split_state(params, nnx.LoRAParam, ...)
    zero_b = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v) if getattr(path[-2], "key", None) == "b" else v, lora)
    return nnx.merge_state(rest, zero_b)


def set_dropout_key(model: nnx.Module, key) -> None:
    """Give every decoder in `model` (a policy, a PPO critic) its own adapter-dropout key for one forward pass."""
    from caujax.models.decoder import Decoder

    decoders = [m for _, m in nnx.iter_graph(model) if isinstance(m, Decoder)]
    for i, decoder in enumerate(decoders):
        if decoder.cfg.lora is not None and decoder.cfg.lora.dropout:
            decoder.dropout_key = jax.random.fold_in(key, i)


def merge_adapters(model) -> "Decoder":  # noqa: F821
    """A plain Decoder (cfg.lora None) whose projections are W + (alpha / r) A B: what export writes. The merge is
    done in float32 and rounded once to the parameter dtype."""
    from caujax.models.decoder import Decoder

    cfg = model.cfg
    graphdef, state = nnx.split(model)
    flat = dict(nnx.to_flat_state(state))
    merged = {}
    for path, var in flat.items():
        if isinstance(var, nnx.LoRAParam):
            continue
        adapter_a = flat.get((*path[:-1], f"{path[-1]}_lora", "a"))
        if adapter_a is None:
            merged[path] = var
            continue
        a, b = adapter_a[...], flat[(*path[:-1], f"{path[-1]}_lora", "b")][...]
        L, r = a.shape[0], a.shape[-1]
        delta = jnp.einsum("lir,lro->lio", a.reshape(L, -1, r).astype(jnp.float32),
                           b.reshape(L, r, -1).astype(jnp.float32)) * cfg.lora.scale
        w = var[...]
        merged[path] = nnx.Param((w.astype(jnp.float32) + delta.reshape(w.shape)).astype(w.dtype))
    plain = cfg.replace(lora=None)
    base_graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(plain, rngs=nnx.Rngs(0))))
    return nnx.merge(base_graphdef, nnx.from_flat_state(merged))
