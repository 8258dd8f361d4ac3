"""--resume never mixes two runs and never loses a checkpoint (caujax/resume.py, issue 13 kinds 4 and 8).

Kind 4: a damaged checkpoint is reported as damage (what is missing, which step), never as a config change; the run
resumes from the newest intact step, the damaged one is moved aside (not deleted) and every intact one is kept.
Kind 8: a resumed run whose method or any same-run field differs from the saved config is refused, naming the
fields; --resume says which step it resumed from, or that it starts fresh.
Most cases run on a tiny orbax checkpoint written here (no training); one end-to-end run covers the issue's example.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from caujax import checkpoint, resume, train
from caujax.config import apply_overrides, load_preset, to_json_dict
from caujax.models import Decoder, ModelConfig
from caujax.sharding import make_mesh, tree_shardings
from caujax.step import init_state

REPO = pathlib.Path(__file__).resolve().parent.parent
TINY = REPO / "configs/tiny.py"


def _snapshot(run_dir: pathlib.Path) -> dict:
    return {str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


# Which array of a damaged data file fails first varies (one file holds several); its name is always given.
ARRAY_UNREADABLE = r"array (params|opt_state)\.[\w.]+ cannot be read: [A-Z_]+: "


def _biggest_array_file(step_dir: pathlib.Path) -> pathlib.Path:
    """The largest OCDBT data file of a checkpoint's state: it holds array bytes (the embedding's, here)."""
    return max(step_dir.glob("state/ocdbt.process_*/d/*"), key=lambda p: p.stat().st_size)


# --- a tiny checkpointed run, without training -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run_dir holding checkpoints 1, 2 and 3 of one tiny state (step i: its `step` field = i), written with
    configs/tiny.py's config; (run_dir, cfg, abstract state, shardings)."""
    run_dir = tmp_path_factory.mktemp("tiny_run")
    cfg = apply_overrides(load_preset(TINY), {"run_dir": str(run_dir), "checkpoint.keep": "3"})
    mesh = make_mesh(devices=jax.devices()[:1])
    _, params = nnx.split(Decoder(ModelConfig.tiny("qwen2"), rngs=nnx.Rngs(0)))
    state, sharding = init_state(params, optax.adamw(1e-3), mesh, seed=3)
    manager = checkpoint.make_manager(run_dir, cfg.checkpoint)
    for step in (1, 2, 3):
        checkpoint.save(manager, step, _with_step(state, step), {"epoch": 0, "batch": step}, to_json_dict(cfg))
    manager.wait_until_finished()
    manager.close()
    abstract = jax.eval_shape(lambda: state)
    return run_dir, cfg, abstract, tree_shardings(abstract, mesh)


def _with_step(state, step):
    return dataclasses.replace(state, step=np.int32(step))


@pytest.fixture
def run(tiny_run, tmp_path):
    """A fresh copy of the tiny run to damage: (run_dir, cfg, abstract, shardings)."""
    src, cfg, abstract, shardings = tiny_run
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    return run_dir, apply_overrides(cfg, {"run_dir": str(run_dir)}), abstract, shardings


def _resume(run_dir, cfg, abstract, shardings):
    res = resume.plan(cfg, to_json_dict(cfg), resume=True)
    state, position = res.restore(abstract, shardings, to_json_dict(cfg))
    return res, state, position


def test_truncated_array_file_resumes_from_the_previous_step_and_names_the_array(run):
    run_dir, cfg, abstract, shardings = run
    data = _biggest_array_file(run_dir / "checkpoints/3")
    os.truncate(data, 1000)
    res, state, position = _resume(run_dir, cfg, abstract, shardings)
    assert res.step == 2 and int(state.step) == 2 and position == {"epoch": 0, "batch": 2}
    assert re.match(ARRAY_UNREADABLE, res.damaged["3"]), res.damaged
    with pytest.warns(UserWarning, match=r"(?s)resuming from step 2.*checkpoints/3 is damaged: array "
                                         r".* cannot be read.*moved to .*damaged_checkpoints/3"):
        res.set_aside()
    # Nothing lost: the damaged step is moved aside whole, the intact ones stay where they were.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["1", "2"]
    assert (run_dir / "damaged_checkpoints/3/state/_METADATA").is_file()
    assert (run_dir / "damaged_checkpoints/3" / data.relative_to(run_dir / "checkpoints/3")).stat().st_size == 1000
    # ...and keep-last-K (3 here) does not delete them while this run saves steps 3..6.
    state3 = jax.tree.map(np.asarray, state)
    for step in (3, 4, 5, 6):
        checkpoint.save(res.manager, step, _with_step(state3, step), {}, to_json_dict(cfg))
    res.manager.wait_until_finished()
    assert sorted(res.manager.all_steps()) == [1, 2, 4, 5, 6]
    res.manager.close()


def test_deleted_array_file_is_damage_not_a_config_change(run):
    run_dir, cfg, abstract, shardings = run
    _biggest_array_file(run_dir / "checkpoints/3").unlink()
    manager = checkpoint.make_manager(run_dir, cfg.checkpoint)
    with pytest.raises(checkpoint.CheckpointDamaged, match="step 3 is damaged: " + ARRAY_UNREADABLE) as err:
        checkpoint.restore(manager, 3, abstract, shardings)
    assert "does not fit" not in str(err.value) and "tensorstore_spec" not in str(err.value)
    manager.close()


@pytest.mark.parametrize("missing, named", [("state/_METADATA", "state/_METADATA is missing"),
                                            ("data/metadata", "data/metadata is missing"),
                                            ("state/manifest.ocdbt", "state/manifest.ocdbt is missing")])
def test_missing_metadata_file_is_found_before_any_model_is_built(run, missing, named):
    run_dir, cfg, abstract, shardings = run
    (run_dir / "checkpoints/3" / missing).unlink()
    res = resume.plan(cfg, to_json_dict(cfg), resume=True)
    assert res.latest == 2 and list(res.damaged) == ["3"] and res.damaged["3"].startswith(named)
    res.manager.close()


def test_no_intact_checkpoint_is_refused_naming_each_and_changes_nothing(run):
    run_dir, cfg, abstract, shardings = run
    (run_dir / "checkpoints/3/state/_METADATA").unlink()
    (run_dir / "checkpoints/2/config/metadata").write_text('{"method": "sf')        # cut short
    os.truncate(_biggest_array_file(run_dir / "checkpoints/1"), 10)
    before = _snapshot(run_dir)
    res = resume.plan(cfg, to_json_dict(cfg), resume=True)          # 1 looks whole until its arrays are read
    with pytest.raises(checkpoint.CheckpointDamaged) as err:
        res.restore(abstract, shardings, to_json_dict(cfg))
    message = str(err.value)
    for expected in ("no intact checkpoint", "checkpoints/3: state/_METADATA is missing",
                     "checkpoints/2: config/metadata is not valid JSON",
                     ):
        assert expected in message, message
    assert re.search("checkpoints/1: " + ARRAY_UNREADABLE, message), message
    res.manager.close()
    assert _snapshot(run_dir) == before


def test_checkpoint_of_another_model_keeps_its_own_message(run):
    """An intact checkpoint that does not fit is a config change, not damage: nothing is set aside."""
    run_dir, cfg, _, _ = run
    mesh = make_mesh(devices=jax.devices()[:1])
    _, params = nnx.split(Decoder(ModelConfig.tiny("qwen2", embed_dim=48), rngs=nnx.Rngs(0)))
    other, _ = init_state(params, optax.adamw(1e-3), mesh, seed=3)
    abstract = jax.eval_shape(lambda: other)
    res = resume.plan(cfg, to_json_dict(cfg), resume=True)
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"does not fit this run .*arrays differ"):
        res.restore(abstract, tree_shardings(abstract, mesh), to_json_dict(cfg))
    assert res.damaged == {}
    res.manager.close()


def test_half_written_save_is_set_aside_and_named(run):
    run_dir, cfg, abstract, shardings = run
    partial = run_dir / "checkpoints/4.orbax-checkpoint-tmp-1700000000"
    shutil.copytree(run_dir / "checkpoints/3", partial)
    (partial / "state/_METADATA").unlink()
    res, state, _ = _resume(run_dir, cfg, abstract, shardings)
    assert res.step == 3 and int(state.step) == 3
    with pytest.warns(UserWarning, match=r"4\.orbax-checkpoint-tmp-1700000000 is damaged: a save cut short"):
        res.set_aside()
    assert (run_dir / "damaged_checkpoints/4.orbax-checkpoint-tmp-1700000000").is_dir() and not partial.exists()
    res.manager.close()


# --- kind 8: the same run, or a refusal naming what differs ------------------------------------------------------
@pytest.mark.parametrize("overrides, named", [
    ({"method": "kto"}, "method='sft' (this run: 'kto')"),                                  # the example
    ({"model.arch.rope_theta": "500000.0"}, "model.arch.rope_theta=10000.0 (this run: 500000.0)"),   # same shapes
    ({"model.init_seed": "7"}, "model.init_seed=0 (this run: 7)"),                         # another π_ref
    ({"model.tokenizer": "/elsewhere/tok"}, "model.tokenizer=None (this run: '/elsewhere/tok')"),
    ({"sft.loss_type": "dft"}, "sft.loss_type='nll' (this run: 'dft')"),
    ({"data.num_examples": "64", "optim.lr": "0.1"}, "data.num_examples=32 (this run: 64), optim.lr=0.003"),
])
def test_resume_with_other_same_run_settings_is_refused_naming_them(run, overrides, named):
    run_dir, cfg, _, _ = run
    before = _snapshot(run_dir)
    other = apply_overrides(cfg, overrides)
    with pytest.raises(ValueError, match="holds a run with other settings") as err:
        resume.plan(other, to_json_dict(other), resume=True)
    assert named in str(err.value)
    assert _snapshot(run_dir) == before


def test_resume_may_change_length_cadence_layout_and_place(run):
    run_dir, cfg, _, _ = run
    other = apply_overrides(cfg, {"steps": "9", "log_every": "3", "checkpoint.every_steps": "2", "mesh.data": "2",
                                  "data.micro_batch_size": "4", "model.compute_dtype": "bfloat16",
                                  "reference.mode": "cached", "export": "false", "dpo.beta": "0.5"})
    res = resume.plan(other, to_json_dict(other), resume=True)
    assert res.latest == 3
    res.manager.close()


def test_resume_without_checkpoint_starts_fresh_and_says_so(tmp_path, capsys):
    cfg = apply_overrides(load_preset(TINY), {"run_dir": str(tmp_path / "new")})
    res = resume.plan(cfg, to_json_dict(cfg), resume=True)
    assert res.latest is None
    assert f"no checkpoint in {tmp_path / 'new' / 'checkpoints'}: starting fresh at step 0" in capsys.readouterr().err


def test_resume_without_checkpoint_still_refuses_another_runs_config_json(tmp_path):
    """A run killed before its first checkpoint left config.json (and its tokenizer): --resume under another
    method would reuse them silently."""
    cfg = apply_overrides(load_preset(TINY), {"run_dir": str(tmp_path)})
    (tmp_path / "config.json").write_text(json.dumps(to_json_dict(cfg)))
    other = apply_overrides(cfg, {"method": "dpo", "dpo.beta": "0.2"})
    with pytest.raises(ValueError, match=r"method='sft' \(this run: 'dpo'\)"):
        resume.plan(other, to_json_dict(other), resume=True)


# --- end to end: the example ------------------------------------------------------------------------------
def _train(run_dir, *extra):
    return train.main(["--config", str(TINY), f"--run_dir={run_dir}", "--steps=2", "--export=false",
                       "--data.seq_len=256", "--data.num_examples=8", *extra])


def test_deleted_state_metadata_resumes_from_step_1_and_recomputes_step_2(tmp_path, capsys):
    """Train 2 steps, delete checkpoints/2/state/_METADATA, --resume: not "does not fit this run (N arrays
    differ)", but a warning naming the damaged step and the missing file; step 2 is trained again from checkpoint
    1 and gives the loss it gave the first time (the same batch, state and RNG)."""
    run_dir = tmp_path / "run"
    first = _train(run_dir)
    (run_dir / "checkpoints/2/state/_METADATA").unlink()
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"(?s)resuming from step 1.*checkpoints/2 is damaged: state/_METADATA is "
                                         r"missing.*moved to .*damaged_checkpoints/2"):
        again = _train(run_dir, "--resume")
    out = capsys.readouterr()
    assert "does not fit" not in out.err
    assert f"resuming {run_dir} from its checkpoint at step 1: steps 2..2 to go" in out.err
    assert [l["step"] for l in again] == [2]
    assert again[0]["loss"] == first[1]["loss"]
    assert [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["1", "2"]
    assert (run_dir / "damaged_checkpoints/2/state").is_dir()
