"""The decoder's parameter layout as other code sees it: which leaves are matrices, and old-layout detection.

Since scan-over-layers every Block parameter is stacked [L, ...] under one path ("layers", "attn", "q"), so the
rank of an array no longer says what it is (a stacked norm scale [L, D] is 2-D). Paths do.
"""
from __future__ import annotations

import re
from collections.abc import KeysView

import jax


def path_parts(path) -> list[str]:
    """A jax key path (or a "a/b/c" / "a.b.c" string) as its names: ["params", "layers", "0", "attn", "q"]."""
    if isinstance(path, str):
        return [p for p in re.split(r"[./]", path) if p]
    out = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                out.append(str(getattr(key, attr)))
                break
        else:
            out.append(str(key))
    return out


def is_matrix(path) -> bool:
    """A weight matrix (embeddings, projections, MLP), as opposed to a norm scale or a bias: what weight decay
    applies to and what a bf16 reference copy may be cast to. `path` is a jax key path or a dotted/slashed name."""
    parts = path_parts(path)
    return not any(p == "scale" or p.endswith("_bias") for p in parts)


def matrix_mask(tree):
    """The tree's structure with True on weight matrices, False on norm scales and biases (optax's `mask=`)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: is_matrix(path), tree)


def check_layer_layout(tree_or_keys) -> None:
    """Raise ValueError if parameter paths come from the layout before scan-over-layers, where every layer had
    its own tensors (layers/0/attn/q, params.layers.0.attn.q.value); today's layout has "layers" followed by a
    module name. Takes a pytree (an nnx.State, a dict, orbax's item_metadata tree) or an iterable of path strings."""
    if isinstance(tree_or_keys, (str, bytes)):
        tree_or_keys = [tree_or_keys]
    if isinstance(tree_or_keys, (list, tuple, set, frozenset, KeysView)) and \
            all(isinstance(k, str) for k in tree_or_keys):
        paths = [path_parts(k) for k in tree_or_keys]
    else:
        paths = [path_parts(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree_or_keys)]
    for parts in paths:
        for a, b in zip(parts, parts[1:]):
            if a == "layers" and b.isdigit():
                raise ValueError(
                    f"this checkpoint was written with unrolled per-layer parameters ({'.'.join(parts)}), before "
                    "caujax stacked the decoder layers into [L, ...] parameters for scan-over-layers; it cannot be "
                    "restored by this version. To continue that run, load the checkpoint with the caujax version that "
                    "wrote it, export the model to a Hugging Face directory (caujax.models.save_pretrained, whose "
                    "per-layer tensors every version reads) and start a run from it with --model.path=<that "
                    "directory>; or restart the run from its original model.")
