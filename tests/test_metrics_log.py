"""Metric lines: metrics.jsonl always; TensorBoard scalars per metric per step when a writer imports (a fake
tensorboardX here: neither writer is a dependency); nothing else, and no warning, when none does."""
from __future__ import annotations

import json
import logging
import pathlib
import sys
import types
import warnings

import pytest

from caujax import train
from caujax.metrics_log import MetricsLog

REPO = pathlib.Path(__file__).resolve().parent.parent


def _fake_writer_module(name: str) -> tuple[types.ModuleType, list]:
    """A module whose SummaryWriter records what it is given; the list collects every writer made."""
    made = []

    class SummaryWriter:
        def __init__(self, logdir, purge_step=None):
            self.logdir, self.purge_step, self.scalars, self.closed = pathlib.Path(logdir), purge_step, [], 0
            made.append(self)

        def add_scalar(self, tag, value, global_step):
            self.scalars.append((tag, value, global_step))

        def close(self):
            self.closed += 1

    module = types.ModuleType(name)
    module.SummaryWriter = SummaryWriter
    return module, made


@pytest.fixture
def fake_tensorboardx(monkeypatch):
    module, made = _fake_writer_module("tensorboardX")
    monkeypatch.setitem(sys.modules, "tensorboardX", module)
    return made


@pytest.fixture
def no_writer(monkeypatch):
    """Neither writer imports, whatever is installed (None in sys.modules makes `import` raise ImportError)."""
    for name in ("tensorboardX", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)


def _jsonl(run_dir: pathlib.Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_every_metric_of_every_step_to_tensorboard(fake_tensorboardx, tmp_path):
    run_dir = tmp_path / "run"
    lines = train.main(["--config", str(REPO / "configs/tiny.py"), "--method", "dpo", f"--run_dir={run_dir}",
                        "--steps=2", "--data.seq_len=256", "--export=false"])
    [writer] = fake_tensorboardx
    assert writer.logdir == run_dir / "tensorboard"
    assert writer.closed == 1
    assert writer.purge_step == 1                      # a fresh run hides any earlier events of its steps
    assert _jsonl(run_dir) == lines and [l["step"] for l in lines] == [1, 2]
    expected = [(k, v, l["step"]) for l in lines for k, v in l.items() if k != "step"]
    assert {"loss", "lr", "grad_norm", "rewards/margins", "tokens_per_s"} <= {tag for tag, _, _ in expected}
    assert writer.scalars == expected


def test_without_a_writer_only_the_jsonl_is_written(no_writer, tmp_path, caplog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.INFO, logger="caujax.metrics_log"), MetricsLog(tmp_path) as log:
            assert log.writer is None
            log.write({"step": 1, "loss": 0.5})
            log.write({"step": 2, "loss": 0.25})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    assert _jsonl(tmp_path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    [record] = [r for r in caplog.records if r.name == "caujax.metrics_log"]     # one info line, no more
    assert record.levelno == logging.INFO


def test_torch_writer_is_the_fallback(no_writer, monkeypatch, tmp_path):
    module, made = _fake_writer_module("torch.utils.tensorboard")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    monkeypatch.setitem(sys.modules, "tensorboard", types.ModuleType("tensorboard"))    # the package it needs
    with MetricsLog(tmp_path) as log:
        log.write({"step": 1, "loss": 0.5})
    assert made[0].scalars == [("loss", 0.5, 1)] and made[0].closed == 1


def test_writer_and_file_are_closed_when_training_fails(fake_tensorboardx, tmp_path):
    with pytest.raises(FloatingPointError), MetricsLog(tmp_path) as log:
        log.write({"step": 1, "loss": 0.5})
        raise FloatingPointError("loss is nan at step 2")
    assert fake_tensorboardx[0].closed == 1 and log._file.closed
    assert _jsonl(tmp_path) == [{"step": 1, "loss": 0.5}]


def test_resume_keeps_lines_up_to_the_checkpoint_and_hides_later_events(fake_tensorboardx, tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n"
                                                    for s in (1, 2, 3)))
    with MetricsLog(tmp_path, start=2) as log:      # resumed from the step-2 checkpoint: step 3 is recomputed
        log.write({"step": 3, "loss": 0.1})
    assert [(l["step"], l["loss"]) for l in _jsonl(tmp_path)] == [(1, 1.0), (2, 0.5), (3, 0.1)]
    assert fake_tensorboardx[0].purge_step == 3
