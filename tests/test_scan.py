"""Scan over layers: the scanned decoder equals the unrolled loop over the same stacked weights (logits and
gradients, with and without remat), cached greedy decoding equals full-forward greedy, and the ring-buffer cache is
exact for any number of slots. Old per-layer checkpoint trees are refused with a way forward."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from caujax.models import Decoder, init_cache
from caujax.models.layout import check_layer_layout
from caujax.sampling import SamplingParams, sample_ids
from model_fixtures import TINY, strong_weights as _strong_weights

# TINY's gemma3 layers (local, global, local) read the same backwards; an uneven pattern also catches per-layer
# inputs (window flag, RoPE frequencies) fed to the scan in the wrong order.
CASES = {**TINY,
         "gemma3_uneven": TINY["gemma3"].replace(num_layers=4, layer_types=("global", "local", "local", "local"))}
VARIANTS = (dict(scan_layers=False), dict(remat="full"), dict(scan_layers=False, remat="full"))
T = 12                          # longer than gemma3's window of 4
TOL = 1e-5


def _graphdef(cfg):
    return nnx.graphdef(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))


def _batch(vocab):
    tokens = np.random.RandomState(0).randint(1, vocab, (2, T)).astype(np.int32)
    mask = np.ones((2, T), np.int32)
    mask[1, :3] = 0                                          # left padding
    return jnp.asarray(tokens), jnp.asarray(mask)


def _loss(state, graphdef, tokens, mask):
    """Mean next-token NLL over real tokens; logits as aux."""
    logits = nnx.merge(graphdef, state)(tokens, mask)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    m = (mask[:, 1:] * mask[:, :-1]).astype(jnp.float32)
    return (nll * m).sum() / m.sum(), logits


_loss_and_grad = jax.jit(jax.value_and_grad(_loss, has_aux=True), static_argnums=1)


@pytest.mark.parametrize("name", list(CASES))
def test_scanned_equals_unrolled_logits_and_grads_with_and_without_remat(name):
    cfg = CASES[name]
    state = _strong_weights(cfg)
    tokens, mask = _batch(cfg.vocab_size)
    (loss, logits), grads = _loss_and_grad(state, _graphdef(cfg), tokens, mask)
    assert cfg.scan_layers and cfg.remat == "none"
    # Remat wraps the same scan body for every family: checked once, on gemma3 (the most per-layer inputs).
    for variant in VARIANTS if name == "gemma3" else VARIANTS[:1]:
        (loss2, logits2), grads2 = _loss_and_grad(state, _graphdef(cfg.replace(**variant)), tokens, mask)
        np.testing.assert_allclose(logits2, logits, atol=TOL, rtol=0, err_msg=f"{name} {variant}: logits")
        np.testing.assert_allclose(loss2, loss, atol=TOL, rtol=0)
        for (path, g), g2 in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(grads2)):
            where = f"{name} {variant}: d/d{jax.tree_util.keystr(path)}"
            np.testing.assert_allclose(g2, g, atol=TOL, rtol=0, err_msg=where)
    # Every layer's gradient is non-trivial: the scan trains all L slices, not one.
    q_grad = np.asarray(grads["layers"]["attn"]["q"][...])
    assert q_grad.shape[0] == cfg.num_layers and all(np.abs(q_grad[i]).max() > 1e-4 for i in range(cfg.num_layers))


PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [3, 4], [9, 1, 2, 9, 1, 2, 9, 1, 2, 9, 1, 2, 9]]
NEW = 8


@pytest.mark.parametrize("name", list(TINY))
def test_cached_greedy_with_scanned_layers_equals_full_forward_greedy(name):
    cfg = TINY[name]
    model = nnx.merge(_graphdef(cfg), _strong_weights(cfg, seed=3))
    tokens, *_ = sample_ids(model, PROMPTS, SamplingParams(temperature=0, max_new_tokens=NEW))
    width = max(map(len, PROMPTS)) + NEW
    forward = jax.jit(lambda m, t, k: m(t, k)[0])
    for i, prompt in enumerate(PROMPTS):
        seq = list(prompt)
        for _ in range(NEW):
            padded = jnp.asarray([seq + [0] * (width - len(seq))])
            mask = jnp.asarray([[1] * len(seq) + [0] * (width - len(seq))])
            seq.append(int(jnp.argmax(forward(model, padded, mask)[len(seq) - 1])))
        assert tokens[i].tolist() == seq[len(prompt):], f"{name} prompt {i}"


@pytest.mark.parametrize("slots", [4, 5, 9])
def test_ring_buffer_cache_is_exact_for_any_number_of_slots(slots):
    """All-local Gemma 3 (window 4) decoding with S = 4, 5 or 9 slots: the prefill (7 tokens) is longer than the
    buffer and decoding wraps around it, yet every step's logits equal the full forward's."""
    cfg = TINY["gemma3"].replace(layer_types=("local",) * 3)
    model = nnx.merge(_graphdef(cfg), _strong_weights(cfg, seed=5))
    seq = jnp.asarray(np.random.RandomState(1).randint(1, cfg.vocab_size, (1, 13)).astype(np.int32))
    full = model(seq)
    P = 7
    decode = jax.jit(lambda m, t, p, c, prefill: m.decode(t, p, jnp.ones_like(t), c, prefill=prefill),
                     static_argnums=4)
    logits, cache = decode(model, seq[:, :P], jnp.arange(P)[None], init_cache(cfg, 1, slots), True)
    assert cache["k"].shape == (cfg.num_layers, 1, slots, cfg.num_kv_heads, cfg.head_dim)
    np.testing.assert_allclose(logits, full[:, :P], atol=TOL, rtol=0)
    for t in range(P, seq.shape[1]):
        logits, cache = decode(model, seq[:, t:t + 1], jnp.asarray([[t]]), cache, False)
        np.testing.assert_allclose(logits[:, 0], full[:, t], atol=TOL, rtol=0, err_msg=f"position {t}")


def test_old_per_layer_checkpoint_layout_is_refused():
    check_layer_layout(nnx.state(nnx.eval_shape(lambda: Decoder(TINY["qwen2"], rngs=nnx.Rngs(0)))))  # today's
    check_layer_layout(["params.layers.attn.q.value", "params.embed.value"])
    old = {"params": {"layers": {"0": {"attn": {"q": np.zeros((2, 2))}}}, "embed": np.zeros((4, 2))}}
    for tree in (old, ["params.layers.0.attn.q.value"], ["layers/0/attn/q"]):
        with pytest.raises(ValueError, match=r"unrolled per-layer parameters .*save_pretrained.*restart"):
            check_layer_layout(tree)
