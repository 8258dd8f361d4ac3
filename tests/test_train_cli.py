"""What `python -m caujax.train` shows: --help keeps its docstring's layout and lists every config key with its
default (a preset's value with --config), and loss.png has integer step ticks and the learning rate (issue 13, items
10 and 11). The end-of-run summary on a real run is checked in test_train.py, on its runs."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from caujax import config_help, run_report, train
from caujax.config import ARCH_RUN_KEYS, RunConfig, valid_keys

REPO = pathlib.Path(__file__).resolve().parent.parent
TINY = str(REPO / "configs/tiny.py")


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        train.parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _keys(text: str) -> dict[str, str]:
    """{dotted key: value} of the help's key lines ("  --optim.lr=1e-05   η, the peak ...")."""
    return dict(re.findall(r"^  --([\w.]+)=(\S*)", text, flags=re.M))


def test_help_keeps_the_docstring_layout_and_lists_schema_defaults(capsys):
    text = _help(capsys)
    # RawDescriptionHelpFormatter: every line of the module docstring is printed as written, not reflowed.
    for line in train.__doc__.strip().splitlines():
        assert line in text.splitlines(), line
    keys = _keys(text)
    assert keys["optim.lr"] == "1e-05" and keys["data.seq_len"] == "1024" and keys["checkpoint.keep"] == "3"
    assert keys["dpo.beta"] == "0.1" and keys["grpo.rollout.n"] == "8" and keys["method"] == "<required>"
    assert keys["grpo.rollout.rewards"] == "causal,format" and keys["export"] == "true"
    assert re.search(r"^  --optim\.lr=1e-05 +η, the peak learning rate", text, flags=re.M)
    assert re.search(r"^  --kto\.beta=0\.1 +β of KTO eq\. 7", text, flags=re.M)       # from the class docstring
    # Every settable key of the schema, nothing else (sections themselves are not settable); the run settings
    # under model.arch are refused there (set by --model.<name>), so they are not listed.
    every = valid_keys(RunConfig)
    refused = {k for k in every if any(k == r or k.startswith(r + ".") for r in ARCH_RUN_KEYS)}
    assert "model.arch.scan_layers" in refused and "model.arch.lora.rank" in refused
    leaves = {k for k in every if not any(o.startswith(k + ".") for o in every)} - refused
    assert leaves - set(keys) == set() and set(keys) - (set(every) - refused) == set()


def test_help_with_a_preset_lists_its_values_and_its_method_section(capsys):
    keys = _keys(_help(capsys, "--config", TINY))
    assert keys["optim.lr"] == "0.003" and keys["data.seq_len"] == "768" and keys["steps"] == "2"
    assert keys["method"] == "sft" and keys["model.arch.vocab_size"] == "1024" and "sft.loss_type" in keys
    assert "dpo.beta" not in keys and "grpo.rollout.n" not in keys
    kto = _keys(_help(capsys, "--config", TINY, "--method", "kto", "--kto.beta=0.3", "--optim.lr", "5e-4"))
    assert kto["method"] == "kto" and kto["kto.beta"] == "0.3" and kto["optim.lr"] == "0.0005"
    assert "sft.loss_type" not in kto


def test_help_with_a_broken_preset_still_helps(capsys):
    text = _help(capsys, "--config", "configs/no_such_preset.py")
    assert "(--config configs/no_such_preset.py: config file configs/no_such_preset.py does not exist)" in text
    assert _keys(text)["optim.lr"] == "1e-05"


def test_help_from_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "caujax.train", "--config", "configs/tiny.py", "--help"], cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: python -m caujax.train" in proc.stdout and "  --data.batch_size=4 " in proc.stdout
    missing = subprocess.run([sys.executable, "-m", "caujax.train"], cwd=REPO, capture_output=True, text=True,
                             env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert missing.returncode == 2 and "the following arguments are required: --config" in missing.stderr


def test_field_docs_read_comments_with_continuations_and_docstring_entries():
    from caujax.config import DataConfig
    from caujax.losses.params import GRPOParams

    data = config_help.field_docs(DataConfig)
    assert data["seq_len"].startswith("T: tokens per row") and data["seq_len"].endswith("what the loss reads)")
    grpo = config_help.field_docs(GRPOParams)
    assert grpo["epsilon_low"].startswith("the clip range [1 - ε_low, 1 + ε_high]")
    assert grpo["epsilon_high"] == "see epsilon_low above"


def test_every_method_field_has_its_own_help_line():
    """No field's help swallows another field's entry ("..., whiten_rewards: ..."), and every field has one."""
    import dataclasses
    import re

    from caujax.losses.params import DPOParams, GRPOParams, KTOParams, PPOParams, RolloutParams, SFTParams

    for cls in (SFTParams, DPOParams, KTOParams, GRPOParams, PPOParams, RolloutParams):
        names = {f.name for f in dataclasses.fields(cls)}
        docs = config_help.field_docs(cls)
        for name, text in docs.items():
            swallowed = {m for m in re.findall(r"(?<![\w.])(\w+): ", text) if m in names}
            assert not swallowed, (cls.__name__, name, text)
        assert names <= set(docs), (cls.__name__, names - set(docs))


# --- loss.png ------------------------------------------------------------------------------------------------------
def _panels(lines) -> dict:
    """{y label: axes} of loss.png's figure, drawn (tick labels exist only after a draw)."""
    import matplotlib.pyplot as plt

    fig = run_report.loss_figure(lines, "run")
    fig.canvas.draw()
    plt.close(fig)
    return {ax.get_ylabel(): ax for ax in fig.axes}


def _tick_labels(ax) -> list[str]:
    lo, hi = ax.get_xlim()
    return [t.get_text() for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= x <= hi]


@pytest.mark.parametrize("lines", [
    # the example: a 2-step run (matplotlib's default ticks would read 1.0, 1.2, ..., 2.0)
    [{"step": 1, "lr": 3e-3, "loss": 6.95}, {"step": 2, "lr": 3e-3, "loss": 6.83}],
    # 7 steps of warmup + cosine with online-RL fields: four panels
    [{"step": s, "lr": lr, "loss": 0.1 * s, "reward_mean": 0.5, "accuracy": 0.25}
     for s, lr in zip(range(1, 8), (2e-6, 4e-6, 6e-6, 5e-6, 3e-6, 1e-6, 0.0))],
])
def test_loss_png_has_integer_step_ticks_and_the_learning_rate(lines):
    panels = _panels(lines)
    assert "learning rate" in panels and "loss" in panels
    assert ("mean reward" in panels) == ("reward_mean" in lines[0])
    for ax in panels.values():
        labels = _tick_labels(ax)
        assert labels and all(re.fullmatch(r"\d+", t) for t in labels), labels
    x, y = panels["learning rate"].get_lines()[0].get_data()
    assert list(x) == [l["step"] for l in lines] and list(y) == [l["lr"] for l in lines]


def test_plot_loss_writes_the_png(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "lr": 0.001, "loss": 2.0}\n{"step": 2, "lr": 0.001, '
                                            '"loss": 1.5}\n')
    path = run_report.plot_loss(tmp_path)
    assert path == tmp_path / "loss.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
