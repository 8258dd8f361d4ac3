"""The attention kernels agree: blockwise (flash-style, custom VJP), jax.nn's fused form and the Pallas splash kernel
(interpret mode on CPU, and per shard under a mesh) equal the plain form in outputs and gradients (1e-5, float32)
with GQA, sliding windows, softcapping, left/right padding and packed segments; in the decoder, the blockwise and
splash kernels give the plain logits and gradients, also for a Gemma 3 local/global stack, and the blockwise one
samples the plain tokens through the sampler's prefill."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from caujax.models import Decoder
from caujax.models.attention import attend, resolve
from caujax.models.decoder import decode_reads_filled, default_mask_positions, init_cache
from caujax.sampling import SamplingParams, sample_ids
from caujax.sharding import BATCH_AXES, make_mesh
from model_fixtures import TINY, strong_weights

TOL = 1e-5


def _segments():
    """Row 0: three packed documents then padding; row 1: left padding then one document; T = 37 (no block
    multiple). Positions restart per segment."""
    seg = np.zeros((2, 37), np.int32)
    seg[0, :10], seg[0, 10:25], seg[0, 25:33], seg[1, 5:] = 1, 2, 3, 1
    _, pos = default_mask_positions(jnp.asarray(seg), jnp.asarray(seg))
    return jnp.asarray(seg), pos


def test_default_positions_restart_in_every_segment():
    seg, pos = _segments()
    assert pos[0, :12].tolist() == list(range(10)) + [0, 1]
    assert pos[0, 25:35].tolist() == list(range(8)) + [7, 7]     # trailing pads keep the last position
    assert pos[1, :7].tolist() == [0] * 6 + [1]


# (softcap, window, is_local, block, impl): windows on a local layer and ignored on a global one, softcap, blocks
# smaller than, equal to, and larger than the row.
CASES = [(None, None, False, 8, "blockwise"), (3.0, 4, True, 16, "blockwise"), (None, 4, False, 64, "blockwise"),
         (None, 4, True, 8, "dot_product"), (None, None, False, 8, "splash"), (3.0, 4, True, 256, "splash")]


@pytest.mark.parametrize("softcap,window,is_local,block,impl", CASES)
def test_kernels_equal_plain_values_and_gradients(softcap, window, is_local, block, impl):
    seg, pos = _segments()
    B, T, K, G, H = 2, seg.shape[1], 2, 2, 8
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(2.0 * rng.standard_normal(s), jnp.float32) for s in ((B, T, K, G, H), (B, T, K, H),
                                                                                  (B, T, K, H)))
    real = (seg > 0)[:, :, None, None, None]
    cotangent = jnp.asarray(rng.standard_normal((B, T, K, G, H)), jnp.float32) * real   # pads are never read

    def loss(impl, q, k, v):
        out = attend(q, k, v, pos, pos, seg, seg, scale=0.35, softcap=softcap, window=window, is_local=is_local,
                     impl=impl, self_causal=True, block=block)
        return jnp.sum(out * cotangent), out

    (_, want), grads_want = jax.value_and_grad(lambda *a: loss("plain", *a), argnums=(0, 1, 2), has_aux=True)(q, k, v)
    (_, got), grads_got = jax.value_and_grad(lambda *a: loss(impl, *a), argnums=(0, 1, 2), has_aux=True)(q, k, v)
    assert float(jnp.max(jnp.abs(jnp.where(real, got - want, 0.0)))) < TOL
    for g_want, g_got in zip(grads_want, grads_got):
        assert float(jnp.max(jnp.abs(g_got - g_want))) < TOL * max(1.0, float(jnp.max(jnp.abs(g_want))))
    assert not bool(jnp.any(jnp.isnan(got)))             # fully masked pad queries stay finite


def test_auto_picks_per_backend_and_row_length():
    assert resolve("auto", 1, 4096, None) == "plain"               # one decoded token
    assert resolve("auto", 4096, 4096, None) == "blockwise"        # CPU: never T x T
    assert resolve("dot_product", 64, 64, 50.0) == "blockwise"     # jax.nn has no softcap
    assert resolve("auto", 4096, 4096, 50.0) == "blockwise"        # splash is opt-in (not measured on a TPU)
    with pytest.raises(ValueError, match="unknown attention"):
        resolve("flash", 8, 8, None)


def _packed_and_padded(vocab):
    """Row 0 packs two documents (5 and 6 tokens) and pads; row 1 is left-padded; T = 12."""
    rng = np.random.RandomState(1)
    tokens = rng.randint(1, vocab, (2, 12)).astype(np.int32)
    mask = np.zeros((2, 12), np.int32)
    mask[0, :5], mask[0, 5:11], mask[1, 3:] = 1, 2, 1
    return jnp.asarray(tokens), jnp.asarray(mask)


@pytest.mark.parametrize("name,impl", [("qwen2", "blockwise"), ("gemma3", "blockwise"), ("gemma3", "splash")])
def test_blockwise_decoder_equals_plain_logits_and_grads(name, impl):
    cfg = TINY[name]
    state = strong_weights(cfg)
    tokens, mask = _packed_and_padded(cfg.vocab_size)
    real = (mask > 0)[..., None]

    def loss(state, impl):
        logits = nnx.merge(nnx.graphdef(nnx.eval_shape(lambda: Decoder(cfg.replace(attention=impl, attention_block=4),
                                                                         rngs=nnx.Rngs(0)))), state)(tokens, mask)
        return jnp.sum(jnp.where(real, logits, 0.0) ** 2) / 1e3, logits

    (_, want), g_want = jax.value_and_grad(loss, has_aux=True)(state, "plain")
    (_, got), g_got = jax.value_and_grad(loss, has_aux=True)(state, impl)
    scale = float(jnp.max(jnp.abs(want)))
    assert float(jnp.max(jnp.abs(jnp.where(real, got - want, 0.0)))) < TOL * scale
    for a, b in zip(jax.tree.leaves(g_want), jax.tree.leaves(g_got)):
        assert float(jnp.max(jnp.abs(a - b))) < TOL * max(1.0, float(jnp.max(jnp.abs(a))))
    # A packed document reads exactly what it reads alone: the second document of row 0, unpacked, at position 0.
    alone = nnx.merge(nnx.graphdef(nnx.eval_shape(lambda: Decoder(cfg.replace(attention=impl, attention_block=4),
                                                                   rngs=nnx.Rngs(0)))), state)(tokens[:1, 5:11])
    assert float(jnp.max(jnp.abs(alone[0] - got[0, 5:11]))) < TOL * scale


def test_splash_per_shard_under_a_mesh_equals_plain():
    """On a 2 x 2 x 2 mesh (8 fake devices) the Pallas call runs per shard through shard_map: rows over data x fsdp,
    kv heads over tensor; values and gradients are those of the plain form."""
    mesh = make_mesh(2, 2, 2)
    seg, pos = (jnp.concatenate([x, x[::-1]]) for x in _segments())
    B, T, K, G, H = 4, seg.shape[1], 2, 2, 8
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((B, T, K, G, H), (B, T, K, H),
                                                                           (B, T, K, H)))
    cotangent = jnp.asarray(rng.standard_normal((B, T, K, G, H)), jnp.float32) * (seg > 0)[:, :, None, None, None]

    def loss(impl, q, k, v):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            out = attend(q, k, v, pos, pos, seg, seg, scale=0.35, softcap=2.0, impl=impl, self_causal=True)
        return jnp.sum(out * cotangent)

    rows = NamedSharding(mesh, PartitionSpec(BATCH_AXES))
    placed = [jax.device_put(x, rows) for x in (q, k, v)]
    want = jax.grad(lambda *a: loss("plain", *a), argnums=(0, 1, 2))(q, k, v)
    grad = jax.jit(jax.value_and_grad(lambda *a: loss("splash", *a), argnums=(0, 1, 2)))
    assert "shard_map" in str(grad.trace(*placed).jaxpr)
    value, got = grad(*placed)
    np.testing.assert_allclose(float(value), float(loss("plain", q, k, v)), rtol=TOL)
    for g_want, g_got in zip(want, got):
        assert float(jnp.max(jnp.abs(g_got - g_want))) < TOL * max(1.0, float(jnp.max(jnp.abs(g_want))))


def test_blockwise_prefill_and_filled_only_decode_sample_the_plain_tokens():
    """Blocks of 8 against a cache of 16 prompt + 20 new columns: the prefill is blockwise and every decoded token
    attends over the filled columns only (models/decode_attention.py), on Gemma 3's local (window 4) / global stack
    with an attention softcap, greedy and sampled."""
    cfg = TINY["gemma3"].replace(attn_logit_softcap=5.0)
    state = strong_weights(cfg)
    prompts = [[5, 9, 2, 7, 1, 3, 8, 4, 6, 2, 9], [3, 3, 1]]         # longer than the window, and left padding
    models = {impl: nnx.merge(nnx.graphdef(nnx.eval_shape(lambda: Decoder(
        cfg.replace(attention=impl, attention_block=8), rngs=nnx.Rngs(0)))), state) for impl in ("plain", "blockwise")}
    for impl, filled in (("blockwise", True), ("plain", False), ("splash", True), ("dot_product", False),
                         ("auto", True)):
        assert decode_reads_filled(cfg.replace(attention=impl, attention_block=8),
                                   init_cache(cfg, 1, 36, by_column=True)) == filled
    for temperature in (0.0, 1.0):
        params = SamplingParams(temperature=temperature, max_new_tokens=20, seed=1)
        out = {impl: sample_ids(model, prompts, params) for impl, model in models.items()}
        np.testing.assert_array_equal(out["plain"].tokens, out["blockwise"].tokens)
        np.testing.assert_allclose(out["plain"].logp, out["blockwise"].logp, atol=1e-5)
