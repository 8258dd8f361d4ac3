"""Checkpoints: restore onto another mesh, keep-last-K, loud mismatch, old layouts refused (the SIGKILL resume test
lives in test_train.py, over every method)."""
from __future__ import annotations


import jax
import numpy as np
import optax
import pytest
from flax import nnx

from caujax import checkpoint
from caujax.config import CheckpointConfig
from caujax.models import Decoder, ModelConfig
from caujax.sharding import make_mesh, tree_shardings
from caujax.step import init_state



def _state(cfg: ModelConfig, mesh):
    _, params = nnx.split(Decoder(cfg, rngs=nnx.Rngs(0)))
    return init_state(params, optax.adamw(1e-3), mesh, seed=3)


def test_save_on_one_device_restore_on_2x2x2_mesh(tmp_path):
    cfg = ModelConfig.tiny("qwen2")
    state, _ = _state(cfg, make_mesh(devices=jax.devices()[:1]))
    manager = checkpoint.make_manager(tmp_path, CheckpointConfig(every_steps=5, keep=2))
    assert [s for s in range(1, 13) if checkpoint.due(s, CheckpointConfig(every_steps=5), last_step=12)] == [5, 10, 12]
    checkpoint.save(manager, 5, state, {"next": 5}, {"note": "x"})
    manager.wait_until_finished()
    assert checkpoint.latest_step(manager) == 5

    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    abstract = jax.eval_shape(lambda: state)
    restored, data, config = checkpoint.restore(manager, 5, abstract, tree_shardings(abstract, mesh))
    assert data == {"next": 5} and config == {"note": "x"}
    q = restored.params["layers"]["attn"]["q"][...]          # stacked [L, D, N, H]
    assert q.sharding.mesh.shape == mesh.shape and q.sharding.spec[:2] == (None, "fsdp")
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    manager.close()


def test_keeps_the_last_k(tmp_path):
    state, _ = _state(ModelConfig.tiny("qwen2"), make_mesh(devices=jax.devices()[:1]))
    manager = checkpoint.make_manager(tmp_path, CheckpointConfig(every_steps=1, keep=2))
    for step in range(1, 5):
        checkpoint.save(manager, step, state, {"next": step}, {})
    manager.wait_until_finished()
    assert sorted(manager.all_steps()) == [3, 4]
    manager.close()


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    state, _ = _state(ModelConfig.tiny("qwen2"), make_mesh(devices=jax.devices()[:1]))
    manager = checkpoint.make_manager(tmp_path_factory.mktemp("ckpt"), CheckpointConfig(every_steps=1, keep=1))
    checkpoint.save(manager, 1, state, {}, {})
    manager.wait_until_finished()
    yield manager
    manager.close()


@pytest.mark.parametrize("change, expected", [
    (dict(embed_dim=48), "params.embed.value: checkpoint has shape (128, 32) float32, the model expects (128, 48) "
                         "float32"),
    (dict(num_layers=3), "params.layers.attn.q.value: checkpoint has shape (2, 32, 4, 8) float32, the model expects "
                         "(3, 32, 4, 8) float32"),
])
def test_checkpoint_of_another_model_shape_names_the_mismatch(saved_tiny, change, expected):
    mesh = make_mesh(devices=jax.devices()[:1])
    other, _ = _state(ModelConfig.tiny("qwen2", **change), mesh)
    abstract = jax.eval_shape(lambda: other)
    with pytest.raises(checkpoint.CheckpointMismatch, match="does not fit this run") as err:
        checkpoint.restore(saved_tiny, 1, abstract, tree_shardings(abstract, mesh))
    print(err.value)
    assert expected in str(err.value)


def test_a_checkpoint_from_before_scan_over_layers_is_refused_with_the_reason(tmp_path):
    """Per-layer parameters (layers/0/attn/q, the layout before layers were stacked for lax.scan) are refused
    before any bytes are read, with a message that says what changed and how to continue."""
    state, sharding = _state(ModelConfig.tiny("qwen2"), make_mesh(devices=jax.devices()[:1]))
    old = {"step": np.zeros((), np.int32), "rng": np.zeros((2,), np.uint32),
           "params": {"layers": {"0": {"attn": {"q": np.zeros((8, 2, 4), np.float32)}}}}}
    manager = checkpoint.make_manager(tmp_path, CheckpointConfig())
    checkpoint.save(manager, 1, old, {"epoch": 0, "batch": 1}, {})
    manager.wait_until_finished()
    abstract = jax.eval_shape(lambda: state)
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"unrolled per-layer parameters \(params\.layers\.0"):
        checkpoint.restore(manager, 1, abstract, sharding)
    manager.close()
