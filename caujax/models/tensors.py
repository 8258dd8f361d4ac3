"""The Hugging Face tensor table: HF name <-> decoder parameter path, with the layout change between them.

One declarative table serves import (hf.py, gguf.py) and export; every tensor is checked by name and shape.
Hugging Face checkpoints keep one tensor per layer (model.layers.{i}.*); the decoder stacks them into one [L, ...]
parameter per kind, so a per-layer entry names the stacked path and its `layer` index.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from caujax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    hf_name: str
    path: tuple[str, ...]                       # path into the decoder's nnx.State
    shape: tuple[int, ...]                       # decoder layout of this tensor (one layer's slice when stacked)
    to_decoder: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]
    layer: int | None = None                     # per-layer HF tensor: index into the stacked [L, ...] parameter

    def select(self, value):
        """This tensor's part of its decoder parameter: the layer's slice of a stacked one, else all of it."""
        return value if self.layer is None else value[self.layer]


def _same(x):
    return x


# Names of the per-layer norms differ: in Llama/Qwen "post_attention_layernorm" is the norm *before* the MLP,
# in Gemma 3 it normalises the attention output and "pre_feedforward_layernorm" is the pre-MLP norm.
_NORMS = {
    False: {"input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"},
    True: {"input_layernorm": "attn_norm", "post_attention_layernorm": "post_attn_norm",
           "pre_feedforward_layernorm": "mlp_norm", "post_feedforward_layernorm": "post_mlp_norm"},
}


def tensor_table(cfg: ModelConfig, prefix: str = "model.") -> list[TensorSpec]:
    """Every tensor a checkpoint of this config holds, in a stable order (export writes them in this order)."""
    D, N, K, H, F, V = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
    specs = [TensorSpec(f"{prefix}embed_tokens.weight", ("embed",), (V, D), _same, _same)]

    def heads_in(n):   # HF [n*H, D] (out, in) <-> decoder [D, n, H]
        return (lambda w: w.T.reshape(D, n, H)), (lambda w: w.reshape(D, n * H).T)

    for i in range(cfg.num_layers):
        hf, ours = f"{prefix}layers.{i}.", ("layers",)
        layer = lambda name, path, shape, to_dec, to_hf: specs.append(
            TensorSpec(f"{hf}{name}", ours + path, shape, to_dec, to_hf, layer=i))
        for hf_norm, our_norm in _NORMS[cfg.sandwich_norms].items():
            layer(f"{hf_norm}.weight", (our_norm, "scale"), (D,), _same, _same)
        for name, n in (("q", N), ("k", K), ("v", K)):
            layer(f"self_attn.{name}_proj.weight", ("attn", name), (D, n, H), *heads_in(n))
            if cfg.qkv_bias:
                layer(f"self_attn.{name}_proj.bias", ("attn", f"{name}_bias"), (n, H),
                      lambda b, n=n: b.reshape(n, H), lambda b: b.reshape(-1))
        layer("self_attn.o_proj.weight", ("attn", "o"), (N, H, D),
              lambda w: w.T.reshape(N, H, D), lambda w: w.reshape(N * H, D).T)
        if cfg.qk_norm:
            for name in ("q", "k"):
                layer(f"self_attn.{name}_norm.weight", ("attn", f"{name}_norm", "scale"), (H,), _same, _same)
        for name, shape in (("gate", (D, F)), ("up", (D, F)), ("down", (F, D))):
            layer(f"mlp.{name}_proj.weight", ("mlp", name), shape, np.transpose, np.transpose)
    specs.append(TensorSpec(f"{prefix}norm.weight", ("final_norm", "scale"), (D,), _same, _same))
    if not cfg.tie_embeddings:
        specs.append(TensorSpec("lm_head.weight", ("lm_head",), (D, V), np.transpose, np.transpose))
    return specs


def hf_shape(spec: TensorSpec) -> tuple[int, ...]:
    """The shape the checkpoint must hold for this tensor (what error messages show)."""
    return tuple(spec.to_hf(np.zeros(spec.shape, np.int8)).shape)
