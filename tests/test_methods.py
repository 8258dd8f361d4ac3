"""The method table drives everything method-specific; run-level identities (fingerprints) come from content."""
from __future__ import annotations

import os
import pathlib

import jax.numpy as jnp
import pytest

from caujax import methods, train
from caujax.config import ModelSource, RunConfig
from caujax.losses.common import Loss
from caujax.models import ModelConfig

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_cli_choices_are_the_table(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--config", str(REPO / "configs/tiny.py"), "--method", "ppo-typo"])
    assert "(choose from 'sft', 'dpo', 'kto', 'grpo', 'ppo')" in capsys.readouterr().err
    cfg, _ = train.parse_args(["--config", str(REPO / "configs/tiny.py"), "--method", "kto", "--kto.beta=0.3"])
    assert cfg.method == "kto" and cfg.kto.beta == 0.3


def test_step_and_train_name_no_method():
    """step.py and train.py read every method-specific choice from the row (no `if method == ...`)."""
    for name in ("step.py", "train.py"):
        source = (REPO / "caujax" / name).read_text()
        for method in methods.METHODS:
            assert f'"{method}"' not in source and f"'{method}'" not in source, f"{name} names {method}"
        assert "losses.kto" not in source and "losses.dpo" not in source


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match=r"expected one of \('sft', 'dpo', 'kto'"):
        methods.get("ppo-typo")
    with pytest.raises(ValueError, match="expected one of"):
        RunConfig(method="nope", model=ModelSource(arch=ModelConfig.tiny("llama")), steps=1)


def test_metric_means_use_each_losss_own_denominators():
    loss = Loss(total=jnp.asarray(6.0), count=jnp.asarray(4.0),
                metrics={"a": jnp.asarray(8.0), "b": jnp.asarray(3.0), "n_b": jnp.asarray(1.5)},
                denominators=(("b", "n_b"),))
    means = {k: float(v) for k, v in loss.metric_means().items()}
    assert means == {"a": 2.0, "b": 2.0}          # a over count, b over n_b; the count metric itself is not shown


def test_reference_fingerprint_follows_content_not_file_times(tmp_path):
    """Hosts of one run see other mtimes for the same files; the cached reference must still be found there, and a
    changed weight (same size) must not reuse a stale table."""
    src = tmp_path / "a"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"\x00" * 64 + b"weights")
    (src / "config.json").write_text("{}")
    cfg = lambda path: RunConfig(method="dpo", model=ModelSource(path=str(path)), steps=1)
    rows = [([1, 2], [3], [4])]
    same_a = train._fingerprint(cfg(src), rows)
    os.utime(src / "model.safetensors", (10**9, 10**9))
    assert train._fingerprint(cfg(src), rows) == same_a
    (src / "model.safetensors").write_bytes(b"\x00" * 64 + b"weightz")
    assert train._fingerprint(cfg(src), rows) != same_a


def test_switching_away_from_a_preset_that_configures_its_method_warns():
    with pytest.warns(UserWarning, match=r"configures grpo .* --method ppo: those settings are not used"):
        cfg, _ = train.parse_args(["--config", str(REPO / "configs/tiny_grpo.py"), "--method", "ppo"])
    assert cfg.method == "ppo" and cfg.ppo.rollout.n == 1      # ppo's own defaults, not grpo's rollout settings
