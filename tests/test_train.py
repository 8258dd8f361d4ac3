"""Pulse tests of `python -m caujax.train` on configs/tiny.py: each method trains, the run directory is complete,
the export loads in transformers, and bad input fails with a message while the run directory stays untouched."""
from __future__ import annotations

import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from caujax import train
from caujax.checkpoint import CheckpointMismatch
from caujax.data.items import RowError

REPO = pathlib.Path(__file__).resolve().parent.parent


def _run(run_dir, method, *extra):
    return train.main(["--config", str(REPO / "configs/tiny.py"), "--method", method, f"--run_dir={run_dir}",
                       "--steps=2", *extra])


SUMMARIES = {}      # method -> what its run of `runs` printed on stdout (the end-of-run summary)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 2-step run per method: (run_dir, metrics lines)."""
    import contextlib
    import io

    out = {}
    for method in ("sft", "dpo", "kto"):
        run_dir = tmp_path_factory.mktemp(method)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            out[method] = run_dir, _run(run_dir, method)
        SUMMARIES[method] = printed.getvalue()
    return out


def _snapshot(run_dir: pathlib.Path) -> dict:
    return {str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_each_method_trains_two_steps_with_a_finite_moving_loss(runs, method):
    run_dir, lines = runs[method]
    losses = [l["loss"] for l in lines]
    print(method, "losses", losses, "tokens/s", [round(l["tokens_per_s"]) for l in lines])
    assert [l["step"] for l in lines] == [1, 2]
    assert all(math.isfinite(x) for x in losses) and losses[0] != losses[1]
    if method == "dpo":        # policy == reference at step 0: -log σ(0) = ln 2
        assert losses[0] == pytest.approx(math.log(2), abs=1e-5)
    if method == "kto":        # Δ = 0 and z0 = 0 at step 0: 1 - σ(0) = 0.5 for every row
        assert losses[0] == pytest.approx(0.5, abs=1e-5)
    logged = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [l["loss"] for l in logged] == losses
    assert {"config.json", "metrics.jsonl", "loss.png", "checkpoints", "hf", "tokenizer"} <= {
        p.name for p in run_dir.iterdir()}
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run_dir / "config.json").read_text())["method"] == method
    assert (run_dir / "checkpoints" / "2").is_dir()


def test_export_loads_in_transformers_with_the_same_logits(runs):
    import torch
    import transformers

    from caujax.models import load_pretrained

    run_dir, _ = runs["sft"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(run_dir / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(run_dir / "hf", dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "If A changes, does B? P(B=1|A=0)=0.25."}],
                                         tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids == transformers.AutoTokenizer.from_pretrained(run_dir / "tokenizer")(
        text, add_special_tokens=False).input_ids
    with torch.no_grad():
        torch_logits = model(torch.tensor([ids])).logits.numpy()
    ours, _ = load_pretrained(run_dir / "hf")
    diff = float(np.abs(np.asarray(ours(jnp.asarray([ids]))) - torch_logits).max())
    print(f"exported model: {len(ids)} tokens, max |caujax - torch| = {diff:.2e}")
    assert diff <= 1e-4


def test_cached_reference_gives_the_same_dpo_losses(runs, tmp_path):
    _, in_step = runs["dpo"]
    cached = _run(tmp_path, "dpo", "--reference.mode=cached", "--export=false")
    assert list((tmp_path / "reference").glob("dpo-*.npz"))
    for a, b in zip(in_step, cached):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["rewards/margins"] == pytest.approx(b["rewards/margins"], abs=1e-4)


def test_config_typo_fails_naming_the_key_and_touches_nothing(runs):
    run_dir, _ = runs["sft"]
    before = _snapshot(run_dir)
    with pytest.raises(ValueError, match=r"unknown config key --optim\.lrr; did you mean --optim\.lr"):
        _run(run_dir, "sft", "--resume", "--optim.lrr=1e-5")
    assert _snapshot(run_dir) == before


def test_data_row_without_a_completion_fails_naming_the_row_and_touches_nothing(tmp_path):
    run_dir = tmp_path / "run"
    data = tmp_path / "sft.jsonl"
    rows = [{"id": "a", "prompt": "P(Y=1)?", "completion": "0.5"}, {"id": "b", "prompt": "P(Y=0)?"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RowError, match=r"sft.jsonl: row 1: missing field 'completion'"):
        _run(run_dir, "sft", f"--data.source={data}")
    assert not run_dir.exists()


def test_fresh_run_refuses_a_run_dir_with_checkpoints(runs):
    run_dir, _ = runs["kto"]
    before = _snapshot(run_dir)
    with pytest.raises(ValueError, match=r"already holds checkpoints \(latest: step 2\); pass --resume"):
        _run(run_dir, "kto")
    assert _snapshot(run_dir) == before


def test_resume_under_another_method_or_data_is_refused_and_touches_nothing(runs):
    """A checkpoint continued under another method (or data, optimizer, seed, loss hyperparameters) would mix two
    runs; it is refused before any model is built, naming what differs."""
    run_dir, _ = runs["sft"]
    before = _snapshot(run_dir)
    with pytest.raises(ValueError, match=r"other settings: method='sft' \(this run: 'kto'\)"):
        _run(run_dir, "kto", "--steps=4", "--resume")
    with pytest.raises(ValueError, match=r"data.seed=0 \(this run: 1\), optim.lr="):
        _run(run_dir, "sft", "--steps=4", "--resume", "--data.seed=1", "--optim.lr=0.5")
    assert _snapshot(run_dir) == before


def test_resume_of_a_finished_run_says_so_and_writes_nothing(runs, capsys):
    run_dir, _ = runs["sft"]
    before = _snapshot(run_dir)
    assert _run(run_dir, "sft", "--resume") == []
    assert "already at step 2 of steps=2: nothing to train" in capsys.readouterr().err
    assert _snapshot(run_dir) == before


def test_resume_with_another_model_shape_names_the_config_change(runs):
    """The architecture is a same-run field (resume.SAME_RUN): refused before the model is built, by name; an
    intact checkpoint that still does not fit (another caujax version) raises CheckpointMismatch naming the arrays
    (test_checkpoint.py, test_resume_safety.py)."""
    run_dir, _ = runs["sft"]
    before = _snapshot(run_dir)
    with pytest.raises(ValueError, match=r"other settings: model\.arch\.embed_dim=32 \(this run: 48\)") as err:
        _run(run_dir, "sft", "--steps=4", "--resume", "--model.arch.embed_dim=48")
    assert not isinstance(err.value, CheckpointMismatch)
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_each_run_ends_with_a_summary_of_where_everything_went(runs, method):
    run_dir, lines = runs[method]
    text = SUMMARIES[method]
    assert text.startswith(f"caujax.train: {method} done: steps 1..2 of 2 in "), text
    assert re.search(r" in \d+\.\d s \(wall time", text)
    assert f"final loss     {lines[-1]['loss']:.6g} at step 2" in text
    for name, where in (("run directory", run_dir), ("checkpoints", run_dir / "checkpoints"),
                        ("plot", run_dir / "loss.png"), ("export", run_dir / "hf")):
        assert re.search(rf"^  {name} +{re.escape(str(where.absolute()))}", text, flags=re.M), (name, text)
    assert "step 1, step 2" in text


def test_loss_png_of_a_run_has_integer_steps_and_the_learning_rate(runs):
    import matplotlib.pyplot as plt

    from caujax.run_report import loss_figure, read_lines

    run_dir, lines = runs["dpo"]
    fig = loss_figure(read_lines(run_dir), run_dir.name)
    fig.canvas.draw()
    plt.close(fig)
    panels = {ax.get_ylabel(): ax for ax in fig.axes}
    lr_x, lr_y = panels["learning rate"].get_lines()[0].get_data()
    assert list(lr_x) == [1, 2] and list(lr_y) == [l["lr"] for l in lines]
    for ax in panels.values():
        ticks = [t.get_text() for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if 1 <= x <= 2]
        assert ticks == ["1", "2"], ticks


def test_cli_prints_bad_input_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "caujax.train", "--config", "configs/tiny.py", "--dpo.betta=0.2",
                           f"--run_dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "caujax.train: error: unknown config key --dpo.betta; did you mean --dpo.beta?"
    assert not (tmp_path / "run").exists()


# --- a run killed with SIGKILL resumes bit for bit, every method ---------------------------------------------------
# 12 training rows (KTO makes two from each problem; DPO/KTO drop pairs that truncation to 256 tokens made identical)
# = 2-3 batches of 4 per epoch: 7 steps run through at least two epochs and into the next, so the data runs out and
# restarts (twice or more) during the run, and at least once after the resume point. Checkpoints at 2, 4, 6 and 7; the run is killed once step 2's has been written.
RESUME_EXAMPLES = {"sft": 12, "dpo": 12, "kto": 6}
RESUME_STEPS = 7


@pytest.fixture(scope="module")
def subprocess_env():
    """The environment of every `python -m caujax.train` below: conftest's session compilation cache is in it, so
    only the first run of each method compiles its step; identical programs, identical bits."""
    assert os.environ.get("JAX_COMPILATION_CACHE_DIR")
    return dict(os.environ, JAX_PLATFORMS="cpu")


def _resume_cmd(run_dir, method, *extra):
    return [sys.executable, "-m", "caujax.train", "--config", "configs/tiny.py", "--method", method,
            f"--run_dir={run_dir}", f"--steps={RESUME_STEPS}", "--checkpoint.every_steps=2", "--checkpoint.keep=10",
            "--export=false", f"--data.num_examples={RESUME_EXAMPLES[method]}", "--data.seq_len=256", *extra]


def _metrics(run_dir):
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _checkpoint_steps(run_dir):
    return sorted(int(p.name) for p in (run_dir / "checkpoints").glob("*") if p.name.isdigit())


def _final_state(run_dir) -> dict[str, np.ndarray]:
    """Every array of the last checkpoint's train state (params, optimizer moments, step, RNG key), by path."""
    import jax
    import orbax.checkpoint as ocp

    tree = ocp.StandardCheckpointer().restore((run_dir / "checkpoints" / str(RESUME_STEPS) / "state").absolute())
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _data_position(run_dir, step) -> dict:
    return json.loads((run_dir / "checkpoints" / str(step) / "data" / "metadata").read_text())


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_run_killed_by_sigkill_resumes_bit_for_bit(method, tmp_path, subprocess_env):
    """Kill -9 after the step-2 checkpoint, resume: the resumed run starts after the latest checkpoint it finds,
    and its metrics, final parameters, optimizer state, step and RNG key equal the uninterrupted run's bit for bit.
    Catches: data position not restored (or epochs reshuffled differently after a restart), optimizer moments, step
    or RNG key not restored, a resume from the wrong checkpoint, metrics lines lost or duplicated. The RNG key is
    compared as stored, so a restore that re-seeds it fails here; a key that is split and never used (step.py)
    cannot show in parameters, with no dropout or sampling in the step."""
    run = lambda *cmd_args, **kw: subprocess.run(_resume_cmd(*cmd_args), cwd=REPO, env=subprocess_env,
                                                 capture_output=True, text=True, **kw)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run(straight, method)
    assert done.returncode == 0, done.stderr[-3000:]

    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(_resume_cmd(killed, method), cwd=REPO, env=subprocess_env, stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not (killed / "checkpoints" / "2").is_dir():      # orbax renames a checkpoint into place when complete
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    resumed_from = _checkpoint_steps(killed)[-1]
    assert 2 <= resumed_from < RESUME_STEPS, f"the run got to checkpoint {resumed_from} before it was killed"
    resumed_epoch = _data_position(killed, resumed_from)["epoch"]
    # Mark the lines the killed run wrote: the resumed run must keep those up to its checkpoint, and write the rest.
    before = _metrics(killed)
    (killed / "metrics.jsonl").write_text("".join(json.dumps({**l, "before_kill": True}) + "\n" for l in before))

    again = run(killed, method, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    lines = _metrics(killed)
    print(f"{method}: killed with {len(before)} steps logged, resumed from checkpoint {resumed_from}; losses",
          [round(l["loss"], 6) for l in lines])
    assert [l["step"] for l in lines] == list(range(1, RESUME_STEPS + 1))
    assert [l["step"] for l in lines if l.get("before_kill")] == list(range(1, resumed_from + 1)), \
        "the resumed run did not start right after the latest checkpoint"
    timeless = lambda ls: [{k: v for k, v in l.items() if k not in ("tokens_per_s", "before_kill")} for l in ls]
    assert timeless(lines) == timeless(_metrics(straight))      # bitwise: every loss, count, grad norm and lr

    # At least two epochs (3 batches each, or 2 when pairs that truncation made identical were dropped), and the data
    # restarted during the resumed part of the run.
    end = _data_position(straight, RESUME_STEPS)
    assert end == _data_position(killed, RESUME_STEPS) and end["epoch"] >= 2 and end["epoch"] > resumed_epoch
    ours, reference = _final_state(killed), _final_state(straight)
    assert sorted(ours) == sorted(reference) and any("rng" in k for k in ours) and any("mu" in k for k in ours)
    for name in reference:
        assert ours[name].dtype == reference[name].dtype and ours[name].tobytes() == reference[name].tobytes(), name


# --- the batch layout (data/batches.py), by hand ------------------------------------------------------------------
def test_rows_align_the_loss_mask_with_log_probs():
    from caujax.data.batches import pad_rows

    batch = pad_rows([([5, 6, 7], [8, 9, 3])], seq_len=8, pad_id=0)
    np.testing.assert_array_equal(batch["tokens_BT"], [[5, 6, 7, 8, 9, 3, 0, 0]])
    np.testing.assert_array_equal(batch["mask_BT"], [[1, 1, 1, 1, 1, 1, 0, 0]])
    # column t scores token t+1: columns 2..4 score the completion tokens 8, 9 and EOS
    np.testing.assert_array_equal(batch["loss_mask_BT"], [[0, 0, 1, 1, 1, 0, 0, 0]])
    cut = pad_rows([([1, 2, 3, 4, 5, 6], [7, 8, 9])], seq_len=5, pad_id=0)    # the prompt loses its start
    np.testing.assert_array_equal(cut["tokens_BT"], [[5, 6, 7, 8, 9]])
    np.testing.assert_array_equal(cut["loss_mask_BT"], [[0, 1, 1, 1, 0]])


def test_dpo_and_kto_layouts():
    from caujax.data.batches import dpo_batch, kto_batch

    d = dpo_batch([([1], [2], [3]), ([4], [5], [6])], seq_len=3, pad_id=0)
    np.testing.assert_array_equal(d["tokens_BT"][:, :2], [[1, 2], [4, 5], [1, 3], [4, 6]])   # [chosen; rejected]
    rows = [([10], [11], True), ([20], [21], False), ([30], [31], True), ([40], [41], False)]
    k = kto_batch(rows, seq_len=3, pad_id=0, kl_group=2)
    np.testing.assert_array_equal(k["label_B"], [1, 0, 1, 0])
    # prompt i with the completion of row i-1 within each group of 2 (TRL's rotate-by-one)
    np.testing.assert_array_equal(k["kl_tokens_BT"][:, :2], [[10, 21], [20, 11], [30, 41], [40, 31]])


def test_batches_resume_from_a_position():
    from caujax.data.batches import Batches

    rows = list(range(10))
    first = Batches(rows, 3, seed=1, collate=np.array)
    seen = [next(first) for _ in range(5)]                    # 3 batches per epoch: crosses into epoch 1
    again = Batches(rows, 3, seed=1, collate=np.array, position={"epoch": 0, "batch": 2})
    for expected in seen[2:]:
        np.testing.assert_array_equal(next(again), expected)
    assert len(set(np.concatenate(seen[:3]).tolist())) == 9   # an epoch draws without replacement (1 row left over)


def test_kto_row_without_a_label_is_named(tmp_path):
    from caujax.data.batches import read_examples

    data = tmp_path / "kto.jsonl"
    data.write_text(json.dumps({"prompt": "p", "completion": "c", "label": True}) + "\n"
                    + json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    with pytest.raises(RowError, match=r"kto.jsonl: row 1: missing field 'label'"):
        read_examples(data, "kto")


def test_resume_accepts_a_config_written_before_a_field_existed():
    """A run saved before data.pad_multiple / data.packing existed resumes (it had their defaults' behaviour for
    the loss); a setting that did change is still refused."""
    from caujax.config import apply_overrides, load_preset, to_json_dict

    now = to_json_dict(load_preset(train_preset := pathlib.Path(__file__).parent.parent / "configs/tiny.py"))
    saved = json.loads(json.dumps(now))
    del saved["data"]["pad_multiple"], saved["data"]["packing"]
    train._check_same_run(saved, now, "runs/old")
    other = to_json_dict(apply_overrides(load_preset(train_preset), {"optim.lr": "0.5"}))
    with pytest.raises(ValueError, match="optim.lr"):
        train._check_same_run(saved, other, "runs/old")


def test_nan_grad_norm_stops_the_run_like_a_nan_loss(tmp_path, monkeypatch):
    """A finite loss whose gradient norm is NaN has already written NaN into the weights: the run stops there,
    naming grad_norm, instead of logging the line without it (metrics_log drops NaN as a metric without a mean)."""
    import jax
    import jax.numpy as jnp

    real = train.make_train_step

    def nan_grad_norm(*args, **kwargs):
        step = real(*args, **kwargs)

        poison = jax.jit(lambda m: {**m, "grad_norm": m["grad_norm"] * jnp.nan})    # on device: no transfer

        def wrapped(state, batch, ref):
            state, metrics = step(state, batch, ref)
            return state, poison(metrics)
        return wrapped

    monkeypatch.setattr(train, "make_train_step", nan_grad_norm)
    with pytest.raises(FloatingPointError, match=r"grad_norm is nan at step 1; finite up to step 0"):
        _run(tmp_path / "nan", "sft", "--export=false", "--log_every=1")
