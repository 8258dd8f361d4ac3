"""Attention of one decoded token over the filled columns of the sampler's KV cache only.

The sampler's cache (decoder.init_cache(..., by_column=True)) allocates prompt columns + max_new_tokens slots and
fills one column a step, the same column for every row (cache["at"]). The plain form reads all S slots every step,
the empty ones too, after copying the layer's whole [B, S, K, H] keys and values out of the stacked [L, ...] buffer.
This form walks the cache in blocks of `block` columns up to the last filled one, slicing each block straight out of
the stacked buffer, with the online-softmax recurrence of FlashAttention (Dao et al. 2022, Alg. 1; as flash-decoding
applies it to one query). On a sliding-window layer it starts at the first block the window reaches: a row's
columns from its first real token on hold consecutive positions (left-padded prompt, then one column a step), so a
key whose column is `window` or more before the query's is out of the window for every row.

In the sampler's loop the plain form's step time grows with the allocated length, this one's with the filled part
(a 6-layer Gemma-3-270M-shaped stack, 40 rows, 32 steps: 5.3 / 6.9 / 10.0 / 34.3 s with 192 / 512 / 1,024 / 4,096
columns allocated, against 5.1 / 5.2 / 5.5 / 5.8 s; bench/README.md). Blocks are min(attention_block, DECODE_BLOCK)
columns: Gemma-3-270M's attention over one layer's cache, 64 rows x 512 slots, timed alone: the plain form 57-61 ms
at any fill; blocks of 128 15 / 22 / 33 / 31 ms with 129 / 257 / 385 / 512 columns filled, of 64 16-38 ms, of 256
29-45 ms.

Same visibility rule and result as attention.attend's plain form (tests/test_decode_attention.py): keys with
position -1 (empty slots, pads, rows already done) are invisible. Forward only: the sampler never differentiates.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from caujax.models.attention import _NEG, _online_softmax_step, _scores

DECODE_BLOCK = 128      # the largest block a decoded token walks the cache in (module docstring: the measurement)


def decode_attend(q_B1KGH, cache, layer, q_pos_B1, q_seg_B1, *, scale: float, softcap: float | None = None,
                  window: int | None = None, is_local=False, block: int = 256):
    """Output o_B1KGH (dtype of q) of one query per row against cache columns [first, at], the token at `at` itself
    included: cache k, v [L, B, S, K, H], pos [L, B, S] and the scalar "at" of a by-column cache that already holds
    this step's keys. `layer` and `is_local` may be traced (the layer scan)."""
    k_LBSKH, v_LBSKH, pos_LBS = cache["k"], cache["v"], cache["pos"]
    B, T, K, G, H = q_B1KGH.shape
    if T != 1:
        raise ValueError(f"decode_attend takes one query per row, got {T}")
    S = k_LBSKH.shape[2]
    bk = min(block, S)
    end = cache["at"] + 1                                       # columns [0, end) are written
    first = 0
    if window:
        first = jnp.where(is_local, jnp.maximum(end - window, 0) // bk, 0)
    zero = jnp.zeros((), jnp.int32)
    layer = jnp.asarray(layer, jnp.int32)

    def body(j, carry):
        # The last block is moved back to end at S; its columns before j * bk were read by block j - 1.
        start = jnp.minimum(j * bk, S - bk)
        k_j = jax.lax.dynamic_slice(k_LBSKH, (layer, zero, start, zero, zero), (1, B, bk, K, H))[0]
        v_j = jax.lax.dynamic_slice(v_LBSKH, (layer, zero, start, zero, zero), (1, B, bk, K, H))[0]
        pos_j = jax.lax.dynamic_slice(pos_LBS, (layer, zero, start), (1, B, bk))[0]
        fresh = (start + jnp.arange(bk)) >= j * bk
        seg_j = ((pos_j >= 0) & fresh[None]).astype(jnp.int32)
        s, _, _ = _scores((scale, softcap, window), q_B1KGH, k_j.astype(q_B1KGH.dtype), q_pos_B1, pos_j, q_seg_B1,
                          seg_j, is_local)
        return _online_softmax_step(*carry, s, v_j.astype(q_B1KGH.dtype))

    init = (jnp.full((B, K, G, 1), _NEG, jnp.float32), jnp.zeros((B, K, G, 1), jnp.float32),
            jnp.zeros((B, K, G, 1, H), jnp.float32))
    _, l, acc = jax.lax.fori_loop(first, -(-end // bk), body, init)
    return jnp.einsum("BKGTH->BTKGH", acc / l[..., None]).astype(q_B1KGH.dtype)
