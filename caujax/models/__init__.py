"""Model layer: the NNX decoder, Hugging Face safetensors import/export and GGUF import.

`ModelConfig` and `RopeScaling` are plain dataclasses; the jax-backed names (Decoder, load_pretrained, ...) are
imported on first use (PEP 562), so `caujax.config` can describe an architecture without importing jax.
"""
from __future__ import annotations

import importlib

from caujax.models.config import ModelConfig, RopeScaling

_LAZY = {"Decoder": "caujax.models.decoder", "init_cache": "caujax.models.decoder",
         "CheckpointError": "caujax.models.hf", "save_pretrained": "caujax.models.hf",
         "load_pretrained": "caujax.models.load"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'caujax.models' has no attribute {name!r}")


__all__ = ["CheckpointError", "Decoder", "ModelConfig", "RopeScaling", "init_cache", "load_pretrained",
           "save_pretrained"]
