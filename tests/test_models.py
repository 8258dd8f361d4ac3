"""Parity of the caujax decoder with transformers, on one device and on a 2x2x2 mesh; export round trips.

The checkpoints (model_fixtures.py) have norm scales near 1, peaked attention, a non-default norm eps and 48
positions; the tolerance (model_fixtures.REL_TOL) is near float32's floor for them. "Catches" below lists the
deliberate breakages of caujax each test was seen to fail on (for every family a breakage concerns): RoPE base x2,
Llama 3.1 medium band left unsmoothed (llama), norm eps hard-coded to 1e-5, norm eps taken from the family default
instead of config.json's rms_norm_eps, q/k RMSNorm applied after RoPE (qwen3, gemma3).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from caujax.models import load_pretrained, save_pretrained
from caujax.sharding import make_mesh
from model_fixtures import (ABS_TOL, FAMILIES, REL_TOL, attention_entropy, make_hf_checkpoint, padded_batch,
                            parity_weights, torch_logits)


@pytest.fixture(scope="module", params=FAMILIES)
def checkpoint(request, tmp_path_factory):
    """(family, HF directory, torch model, reference logits on the padded batch)."""
    family = request.param
    path = tmp_path_factory.mktemp(family)
    torch_model = make_hf_checkpoint(family, path)
    tokens, mask, positions = padded_batch()
    return family, path, torch_model, torch_logits(torch_model, tokens, mask, positions)


def _max_diff(logits, ref):
    _, mask, _ = padded_batch()
    return float(np.abs(np.asarray(logits) - ref)[mask.astype(bool)].max())


def _layer_param(model, *suffix):
    """A block parameter by its path's ending, whether the layers are a list or one stacked [L, ...] block."""
    return next(v[...] for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param)) if path[-len(suffix):] == suffix)


def _assert_close(family, logits, ref, what=""):
    diff, scale = _max_diff(logits, ref), float(np.abs(ref).max())
    print(f"{family}{what}: max |caujax - torch| = {diff:.2e} (relative {diff / scale:.2e}, max |logit| {scale:.2f})")
    assert diff <= REL_TOL[family] * scale and diff <= ABS_TOL, f"{family}{what}: max diff {diff:.2e}"


@pytest.mark.parametrize("family", FAMILIES)
def test_fixture_attention_is_peaked(family):
    """The fixture keeps its power: attention entropy well below uniform (~0.2 of it) wherever 8+ keys are seen."""
    entropies = [e for e in attention_entropy(family, parity_weights(family)) if not np.isnan(e)]
    print(family, "attention entropy / uniform, per layer:", [round(e, 3) for e in entropies])
    assert entropies and max(entropies) < 0.4


def test_logits_match_transformers(checkpoint):
    """Catches: RoPE base x2, unsmoothed Llama 3.1 band, eps hard-coded, eps from the family default, q/k norm after
    RoPE."""
    family, path, _, ref = checkpoint
    model, _ = load_pretrained(path)
    assert model.cfg.family == family
    tokens, mask, _ = padded_batch()
    _assert_close(family, model(jnp.asarray(tokens), jnp.asarray(mask)), ref)


def test_few_row_logits_match_transformers(checkpoint):
    """Decode steps project a few rows with the weights as the dot's left operand (decoder._FEW_ROWS); the padded
    batch's 144 rows take the usual order. Both must give transformers' logits: the batch in 16-column slices."""
    from caujax.models import decoder

    family, path, _, ref = checkpoint
    model, _ = load_pretrained(path)
    tokens, mask, _ = padded_batch()
    h = model.hidden(jnp.asarray(tokens), jnp.asarray(mask))
    assert h.shape[0] * 16 <= decoder._FEW_ROWS < h.shape[0] * h.shape[1]
    sliced = jnp.concatenate([model.logits(h[:, c:c + 16]) for c in range(0, h.shape[1], 16)], axis=1)
    _assert_close(family, sliced, ref, " (few rows)")


def test_logits_match_on_2x2x2_mesh(checkpoint):
    """Catches: RoPE base x2, unsmoothed Llama 3.1 band, eps hard-coded, eps from the family default, q/k norm after
    RoPE."""
    family, path, _, ref = checkpoint
    assert len(jax.devices()) == 8, "conftest.py should fake 8 CPU devices"
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    model, _ = load_pretrained(path, mesh=mesh)
    q = _layer_param(model, "attn", "q")
    assert len(q.sharding.device_set) == 8 and "fsdp" in tuple(q.sharding.spec)
    tokens, mask, _ = padded_batch()
    batch = jax.device_put((jnp.asarray(np.concatenate([tokens, tokens[:1]])),
                            jnp.asarray(np.concatenate([mask, mask[:1]]))),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp"))))
    with jax.set_mesh(mesh):
        logits = jax.jit(lambda m, t, k: m(t, k))(model, *batch)
    _assert_close(family, np.asarray(logits)[:3], ref, " on 2x2x2")


def test_export_loads_in_transformers_and_round_trips(checkpoint, tmp_path):
    """Catches: eps from the family default (the export writes it back); the forward-pass breakages cannot show here,
    transformers runs both sides."""
    import transformers

    family, path, _, ref = checkpoint
    model, _ = load_pretrained(path)
    save_pretrained(model, None, tmp_path / "once")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "once", dtype="float32").eval()
    _assert_close(family, torch_logits(reloaded, *padded_batch()), ref, " exported, in transformers")
    again, _ = load_pretrained(tmp_path / "once")
    save_pretrained(again, None, tmp_path / "twice")
    first, second = load_file(tmp_path / "once" / "model.safetensors"), load_file(tmp_path / "twice" / "model.safetensors")
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name].dtype == second[name].dtype and first[name].tobytes() == second[name].tobytes(), name


def test_sharded_safetensors_with_index(checkpoint, tmp_path):
    """Catches: RoPE base x2, unsmoothed Llama 3.1 band, eps hard-coded, eps from the family default, q/k norm after
    RoPE."""
    family, path, _, ref = checkpoint
    model, _ = load_pretrained(path)
    save_pretrained(model, None, tmp_path, max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model2, _ = load_pretrained(tmp_path)
    tokens, mask, _ = padded_batch()
    _assert_close(family, model2(jnp.asarray(tokens), jnp.asarray(mask)), ref, " from shards")


def test_bfloat16_params_and_compute(checkpoint):
    """bf16 rounding, not a tolerance: with peaked attention it moves logits by up to ~0.9 in transformers itself.
    Bounds gross errors (a wrong cast) by transformers' own bfloat16 error, in max and in mean. Catches too: RoPE base
    x2, unsmoothed Llama 3.1 band, eps hard-coded, eps from the family default, q/k norm after RoPE."""
    import torch
    import transformers

    family, path, _, ref = checkpoint
    model, _ = load_pretrained(path, dtype="bfloat16")
    assert _layer_param(model, "mlp", "up").dtype == jnp.bfloat16
    tokens, mask, positions = padded_batch()
    logits = model(jnp.asarray(tokens), jnp.asarray(mask))
    assert logits.dtype == jnp.float32
    torch_bf16 = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    real = mask.astype(bool)
    ours = np.abs(np.asarray(logits) - ref)[real]
    theirs = np.abs(torch_logits(torch_bf16, tokens, mask, positions) - ref)[real]
    print(f"{family} bf16 vs f32 reference: caujax max {ours.max():.3f} mean {ours.mean():.4f}, "
          f"transformers max {theirs.max():.3f} mean {theirs.mean():.4f}")
    assert ours.max() <= 1.5 * theirs.max() and ours.mean() <= 1.25 * theirs.mean()
