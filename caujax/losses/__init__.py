"""Post-training losses as pure functions of arrays. The method table (caujax/methods.py) binds each objective to
its method; `caujax.losses.params` holds the hyperparameter dataclasses and imports no jax, so nothing here is
imported eagerly (PEP 562): `from caujax.losses import dpo` loads jax, `caujax.losses.params` does not."""
from __future__ import annotations

import importlib

_COMMON = ("Aggregation", "Loss", "aggregate", "hidden_logprobs", "logprobs_from_logits", "safe_mean",
           "token_logprobs")
_MODULES = ("common", "dpo", "grpo", "kto", "params", "ppo", "sft")


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"caujax.losses.{name}")
    if name in _COMMON:
        return getattr(importlib.import_module("caujax.losses.common"), name)
    raise AttributeError(f"module 'caujax.losses' has no attribute {name!r}")


__all__ = [*_COMMON, *_MODULES]
