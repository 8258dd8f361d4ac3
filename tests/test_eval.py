"""python -m caujax.eval end to end on a tiny model: every CauGym set, JSONL + table + PNG, rescoring, resume."""
from __future__ import annotations

import json

import numpy as np
import pytest

from caujax import eval as caujax_eval
from caujax import scoring
from caujax.data.caugym import TEST_SETS
from model_fixtures import make_tiny_checkpoint_with_tokenizer

ARGS = ["--n", "2", "--max-new-tokens", "6", "--limit", "3", "--batch-size", "2", "--temperature", "1.0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, caugym_dir):
    model_dir = make_tiny_checkpoint_with_tokenizer(tmp_path_factory.mktemp("model"))
    out = tmp_path_factory.mktemp("eval")
    report = caujax_eval.main(["--model", str(model_dir), "--suite", "caugym", "--data-dir", str(caugym_dir),
                               "--out", str(out), *ARGS])
    return model_dir, out, report


def test_every_set_writes_jsonl_scores_and_png(run):
    _, out, report = run
    assert sorted(report) == sorted(TEST_SETS)
    for name in TEST_SETS:
        lines = (out / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == 3
        for line in lines:
            record = json.loads(line)
            assert len(record["all_generated_answers"]) == 2 and record["answer"] and record["Type"]
        assert (out / f"{name}.png").stat().st_size > 1000
        rows = json.loads((out / f"{name}.scores.json").read_text())
        assert {"model (paper)", "model (strict)", "always-0 (paper)", "always-LACK (paper)", "solver (paper)"} <= set(rows)
    summary = json.loads((out / "summary.json").read_text())
    assert 1 <= summary["sampler_compilations"] <= 6     # per (batch, length) bucket, never per prompt


def test_rescoring_the_jsonl_gives_the_printed_numbers(run):
    _, out, report = run
    for name in TEST_SETS:
        right = total = 0
        for line in (out / f"{name}.jsonl").read_text().splitlines():
            record = json.loads(line)
            for response in record["all_generated_answers"]:
                right += scoring.score(response, record["answer"], "paper")
                total += 1
        assert report[name]["model (paper)"]["all"] == pytest.approx(right / total)


def test_resume_resamples_only_unfinished_items(run, caugym_dir, tmp_path, monkeypatch):
    model_dir, out, _ = run
    base = out / "base.jsonl"
    lines = base.read_text().splitlines(keepends=True)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "eval_config.json").write_bytes((out / "eval_config.json").read_bytes())   # the same evaluation
    # a kill mid-write: two finished lines and a torn third one
    (resumed / "base.jsonl").write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    calls = []
    real = caujax_eval.generate_set.__globals__["read_generations"]
    from caujax import sampling

    original = sampling.sample
    monkeypatch.setattr(sampling, "sample", lambda m, t, prompts, *a, **k: calls.append(len(prompts)) or original(m, t, prompts, *a, **k))
    caujax_eval.main(["--model", str(model_dir), "--suite", "caugym", "--sets", "base", "--data-dir", str(caugym_dir),
                      "--out", str(resumed), *ARGS])
    assert calls == [1]
    new_lines = (resumed / "base.jsonl").read_text().splitlines(keepends=True)
    assert new_lines[:2] == lines[:2] and len(new_lines) == 3 and len(real(resumed / "base.jsonl")) == 3


def test_attention_option_rebuilds_the_model_and_samples_the_same_tokens(run, caugym_dir, tmp_path, monkeypatch):
    """--attention plain reads every cache slot; the default (auto) decodes over the filled columns once the
    cache is longer than a block: the same seeds must give the same replies."""
    model_dir, out, _ = run
    from caujax import sampling
    from caujax.models.load import with_run_settings

    seen, original = [], sampling.sample
    def spy(m, t, prompts, *a, **k):
        seen.append(m.cfg.attention)
        return original(m, t, prompts, *a, **k)
    monkeypatch.setattr(sampling, "sample", spy)
    caujax_eval.main(["--model", str(model_dir), "--suite", "caugym", "--sets", "base", "--data-dir", str(caugym_dir),
                      "--out", str(tmp_path), "--attention", "plain", *ARGS])
    assert seen and set(seen) == {"plain"}
    replies = lambda path: [json.loads(line)["all_generated_answers"] for line in path.read_text().splitlines()]
    assert replies(tmp_path / "base.jsonl") == replies(out / "base.jsonl")
    assert json.loads((tmp_path / "eval_config.json").read_text())["attention"] == "plain"
    with pytest.raises(SystemExit) as e:
        caujax_eval.main(["--model", str(model_dir), "--attention", "flash"])
    assert e.value.code == 2
    with pytest.raises(ValueError, match=r"changes only .*'attention'.*, not \['param_dtype', 'sliding_window'\]"):
        with_run_settings(None, attention="plain", param_dtype="bfloat16", sliding_window=2)


def test_bar_chart_draws_zero_as_zero_and_keeps_the_legend_off_the_bars():
    from caujax.eval_report import draw_scores

    rows = {"model (paper)": {"ATE": 0.0, "CDE": 0.5, "all": 0.25},
            "model (strict)": {"ATE": 0.0, "CDE": 0.0, "all": 0.0},
            "always-0 (paper)": {"ATE": 1.0, "CDE": 0.3, "all": 0.65},
            "solver (paper)": {"ATE": 1.0, "all": 1.0}}                    # no CDE score: no bar, no "0"
    fig = draw_scores("title", rows)
    ax = fig.axes[0]
    zeros = [t for t in ax.texts if t.get_text() == "0"]
    assert len(zeros) == 4                                                  # ATE x2, CDE strict, all strict
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for p in ax.patches if np.isfinite(p.get_height())]
    assert len(bars) == 11 and not any(legend.overlaps(b) for b in bars)
    assert legend.x0 >= ax.get_window_extent(renderer).x1                   # beside the axes, not on them
