"""Parity of the caujax decoder with transformers, on one device and on a 2x2x2 mesh; export round trips."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from caujax.models import load_pretrained, save_pretrained
from caujax.sharding import make_mesh
from model_fixtures import FAMILIES, make_hf_checkpoint, padded_batch, torch_logits

TOL = 1e-4


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


def test_logits_match_transformers(checkpoint):
    family, path, _, ref = checkpoint
    model, _ = load_pretrained(path)
    assert model.cfg.family == family
    tokens, mask, _ = padded_batch()
    diff = _max_diff(model(jnp.asarray(tokens), jnp.asarray(mask)), ref)
    print(f"{family}: max |caujax - torch| = {diff:.2e}")
    assert diff <= TOL


def test_logits_match_on_2x2x2_mesh(checkpoint):
    family, path, _, ref = checkpoint
    assert len(jax.devices()) == 8, "conftest.py should fake 8 CPU devices"
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    model, _ = load_pretrained(path, mesh=mesh)
    q = model.layers[0].attn.q[...]
    assert len(q.sharding.device_set) == 8 and q.sharding.spec[0] == "fsdp"
    tokens, mask, _ = padded_batch()
    batch = jax.device_put((jnp.asarray(np.concatenate([tokens, tokens[:1]])),
                            jnp.asarray(np.concatenate([mask, mask[:1]]))),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp"))))
    with jax.set_mesh(mesh):
        logits = jax.jit(lambda m, t, k: m(t, k))(model, *batch)
    diff = _max_diff(np.asarray(logits)[:3], ref)
    print(f"{family} on 2x2x2: max diff = {diff:.2e}")
    assert diff <= TOL


def test_export_loads_in_transformers_and_round_trips(checkpoint, tmp_path):
    import transformers

    family, path, _, ref = checkpoint
    model, _ = load_pretrained(path)
    save_pretrained(model, None, tmp_path / "once")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "once", dtype="float32").eval()
    assert _max_diff(torch_logits(reloaded, *padded_batch()), ref) <= TOL
    again, _ = load_pretrained(tmp_path / "once")
    save_pretrained(again, None, tmp_path / "twice")
    first, second = load_file(tmp_path / "once" / "model.safetensors"), load_file(tmp_path / "twice" / "model.safetensors")
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name].dtype == second[name].dtype and first[name].tobytes() == second[name].tobytes(), name


def test_sharded_safetensors_with_index(checkpoint, tmp_path):
    family, path, _, ref = checkpoint
    model, _ = load_pretrained(path)
    save_pretrained(model, None, tmp_path, max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model2, _ = load_pretrained(tmp_path)
    tokens, mask, _ = padded_batch()
    assert _max_diff(model2(jnp.asarray(tokens), jnp.asarray(mask)), ref) <= TOL


def test_bfloat16_params_and_compute(checkpoint):
    family, path, _, ref = checkpoint
    model, _ = load_pretrained(path, dtype="bfloat16")
    assert model.layers[0].mlp.up[...].dtype == jnp.bfloat16
    tokens, mask, _ = padded_batch()
    logits = model(jnp.asarray(tokens), jnp.asarray(mask))
    assert logits.dtype == jnp.float32
    # bf16 keeps ~3 significant digits; this bounds gross errors (a wrong cast), not rounding.
    assert _max_diff(logits, ref) < 0.1 * (1 + np.abs(ref).max())
