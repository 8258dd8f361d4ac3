"""Checkpoints: restore onto another mesh, loud mismatch, and a run killed with SIGKILL resumes bit for bit."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from caujax import checkpoint
from caujax.config import CheckpointConfig
from caujax.models import Decoder, ModelConfig
from caujax.sharding import make_mesh
from caujax.step import init_state, tree_shardings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    q = restored.params["layers"][0]["attn"]["q"][...]
    assert q.sharding.mesh.shape == mesh.shape and q.sharding.spec[0] == "fsdp"
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
    (dict(num_layers=3), "params.layers.2.attn.q.value: expected by the model, not in the checkpoint"),
])
def test_checkpoint_of_another_model_shape_names_the_mismatch(saved_tiny, change, expected):
    mesh = make_mesh(devices=jax.devices()[:1])
    other, _ = _state(ModelConfig.tiny("qwen2", **change), mesh)
    abstract = jax.eval_shape(lambda: other)
    with pytest.raises(checkpoint.CheckpointMismatch, match="does not fit this run") as err:
        checkpoint.restore(saved_tiny, 1, abstract, tree_shardings(abstract, mesh))
    print(err.value)
    assert expected in str(err.value)


def _args(run_dir, *extra):
    return ["--config", "configs/tiny.py", "--method", "sft", f"--run_dir={run_dir}", "--steps=4",
            "--checkpoint.every_steps=2", "--export=false", *extra]


def _losses(run_dir):
    """Every metrics line without its timing fields, which differ from run to run."""
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in l.items() if k != "tokens_per_s"} for l in lines]


def test_run_killed_after_a_checkpoint_resumes_with_identical_losses(tmp_path, monkeypatch):
    from caujax import train

    monkeypatch.chdir(REPO)
    train.main(_args(tmp_path / "straight"))              # the uninterrupted run, in this process
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    killed = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "caujax.train", *_args(killed)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not (killed / "checkpoints" / "2").is_dir():       # orbax renames a checkpoint into place when complete
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    done_before_kill = len(_losses(killed))
    assert 2 <= done_before_kill < 4, "the run finished before it could be killed"
    resumed = subprocess.run([sys.executable, "-m", "caujax.train", *_args(killed, "--resume")], cwd=REPO, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight, again = _losses(tmp_path / "straight"), _losses(killed)
    print(f"killed after {done_before_kill} logged steps; losses", [l["loss"] for l in again])
    assert [l["step"] for l in again] == [1, 2, 3, 4]
    assert again == straight                               # bitwise: every loss, count, grad norm and lr
