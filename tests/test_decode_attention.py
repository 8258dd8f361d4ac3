"""Attention over the filled columns of the sampler's cache (models/decode_attention.py) equals the plain form over
every slot: empty slots and pads (position -1) anywhere, the last block moved back when the block does not divide the
cache, a sliding window that lets the kernel skip the blocks before it, softcapping. Through the sampler:
tests/test_attention.py::test_blockwise_prefill_and_filled_only_decode_sample_the_plain_tokens."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from caujax.models.attention import attend
from caujax.models.decode_attention import decode_attend


def _cache(rng, L, B, S, K, H, at):
    """A by-column cache written up to column `at`: row 1 left-padded by 5 columns, row 2 done (its pad token's
    keys stored with position -1) at columns 9 and 15; positions count the real columns of each row."""
    written = np.arange(S) <= at
    real = np.broadcast_to(written, (B, S)).copy()
    real[1, :5] = False
    real[2, [9, 15]] = False
    pos = np.where(real, np.arange(S) - np.array([0, 5, 0])[:, None], -1)
    k, v = (rng.standard_normal((L, B, S, K, H)).astype(np.float32) for _ in range(2))
    cache = {"k": jnp.asarray(k), "v": jnp.asarray(v), "pos": jnp.asarray(np.broadcast_to(pos, (L, B, S)).copy()),
             "at": jnp.asarray(at, jnp.int32)}
    return cache, pos[:, at:at + 1]


# (at, block, window, is_local, softcap): the block dividing S or not (last block moved back), one block only,
# a window on a local layer (blocks before it skipped; at 22, block 6: its first key is the last of block 2) and on
# a global one, softcap.
CASES = [(22, 8, None, False, None), (12, 8, None, False, 2.0), (22, 5, 6, True, None), (22, 6, 6, True, None),
         (17, 4, 6, False, None),
         (3, 8, 3, True, 3.0), (22, 23, None, False, None)]


@pytest.mark.parametrize("at,block,window,is_local,softcap", CASES)
def test_filled_columns_equal_plain_over_every_slot(at, block, window, is_local, softcap):
    L, B, S, K, G, H, layer = 2, 3, 23, 2, 2, 8, 1
    rng = np.random.default_rng(at)
    cache, q_pos = _cache(rng, L, B, S, K, H, at)
    q = jnp.asarray(2.0 * rng.standard_normal((B, 1, K, G, H)), jnp.float32)
    q_seg = jnp.asarray(q_pos >= 0, jnp.int32)
    q_pos = jnp.asarray(np.maximum(q_pos, 0), jnp.int32)
    k_pos = cache["pos"][layer]
    want = attend(q, cache["k"][layer], cache["v"][layer], q_pos, k_pos, q_seg, (k_pos >= 0).astype(jnp.int32),
                  scale=0.35, softcap=softcap, window=window, is_local=is_local, impl="plain")
    got = decode_attend(q, cache, layer, q_pos, q_seg, scale=0.35, softcap=softcap, window=window,
                        is_local=is_local, block=block)
    real = np.asarray(q_seg)[:, 0] > 0
    np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], rtol=1e-5, atol=1e-5)
