"""Evaluation output that another run wrote is never taken as this run's (issue 13, kinds 2 and 9), the default
output directory is one per model, --limit spreads over the task types, and the data directory is found where the
demo finds it and recorded (items 10 and 11)."""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from caujax import eval as caujax_eval
from caujax import eval_resume, sampling
from caujax.causal.answer import TYPES
from caujax.data import items as data_items
from caujax.sampling.sampler import SampleOutput, bucket, prompt_ids
from model_fixtures import make_tiny_checkpoint_with_tokenizer


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny checkpoints that differ only in their weights, both exported as `.../hf` like every run's."""
    root = tmp_path_factory.mktemp("models")
    return (make_tiny_checkpoint_with_tokenizer(root / "run_a" / "hf", seed=0),
            make_tiny_checkpoint_with_tokenizer(root / "run_b" / "hf", seed=1))


@pytest.fixture
def calls(monkeypatch):
    """Replace the sampler with one that answers instantly (n replies per prompt, 3 tokens each); records the
    number of prompts of every call, and in `.widths` the sampler's prompt-length bucket of each of its prompts."""
    class Calls(list):
        pass
    seen = Calls()
    seen.widths = []

    def fake(model, tokenizer, prompts, params, mesh=None):
        seen.append(len(prompts))
        seen.widths.append([bucket(len(prompt_ids(tokenizer, p))) for p in prompts])
        texts = [[f'{{"PROB": "0.{j}"}}' for j in range(params.n)] for _ in prompts]
        ids = [[[7, 8, 9] for _ in range(params.n)] for _ in prompts]
        return SampleOutput(ids, [[np.zeros(3)] * params.n for _ in prompts], texts,
                            [[True] * params.n for _ in prompts])

    monkeypatch.setattr(sampling, "sample", fake)
    return seen


def run(model, out, caugym_dir, *extra):
    return caujax_eval.main(["--model", str(model), "--sets", "base", "--data-dir", str(caugym_dir), "--limit", "3",
                             "--max-new-tokens", "4", *(["--out", str(out)] if out else []), *extra])


def snapshot(out: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


# ---- kind 2: resume only the same model and settings -------------------------------------------------------------
def test_another_model_and_n_is_refused_and_nothing_is_touched(models, caugym_dir, tmp_path, calls):
    """The issue's case: model A with --n 1, then model B with --n 3 into the same directory."""
    a, b = models
    out = tmp_path / "D"
    run(a, out, caugym_dir, "--n", "1")
    before = snapshot(out)
    with pytest.raises(SystemExit) as refused:
        run(b, out, caugym_dir, "--n", "3")
    message = str(refused.value)
    assert f"model ({a.resolve()} with fingerprint" in message and f"{b.resolve()} with" in message
    assert "files that differ: model.safetensors)" in message and "n (1 then, 3 now)" in message
    assert "--fresh" in message
    assert snapshot(out) == before                         # JSONL and eval_config.json byte for byte
    assert calls == [3]                                    # the refused run sampled nothing


def test_same_model_other_sampling_setting_is_refused_by_name(models, caugym_dir, tmp_path, calls):
    a, _ = models
    out = tmp_path / "D"
    run(a, out, caugym_dir, "--n", "2")
    before = snapshot(out)
    with pytest.raises(SystemExit, match=r"temperature \(0.6 then, 1.0 now\)") as refused:
        run(a, out, caugym_dir, "--n", "2", "--temperature", "1.0")
    assert "model (" not in str(refused.value) and snapshot(out) == before


def test_same_model_and_settings_resume_and_a_copy_of_the_model_counts_as_the_same(models, caugym_dir, tmp_path,
                                                                                calls):
    a, _ = models
    out = tmp_path / "D"
    run(a, out, caugym_dir, "--n", "2")
    copy = tmp_path / "elsewhere" / "hf"
    copy.mkdir(parents=True)
    for f in a.iterdir():                                  # same bytes, new path and new mtimes
        (copy / f.name).write_bytes(f.read_bytes())
    lines = (out / "base.jsonl").read_text().splitlines()
    run(copy, out, caugym_dir, "--n", "2", "--limit", "5", "--batch-size", "1")  # batch size may change
    assert calls == [3, 1, 1]                              # only the two new items were sampled
    assert (out / "base.jsonl").read_text().splitlines()[:3] == lines


def test_unattributable_generations_are_refused(models, caugym_dir, tmp_path, calls):
    a, _ = models
    out = tmp_path / "D"
    out.mkdir()
    (out / "base.jsonl").write_text('{"id": "item_0000000", "all_generated_answers": ["x"]}\n')
    before = snapshot(out)
    with pytest.raises(SystemExit, match="unknown origin"):
        run(a, out, caugym_dir, "--n", "1")
    assert snapshot(out) == before and calls == []


def test_fresh_moves_the_old_set_aside_and_starts_over(models, caugym_dir, tmp_path, calls):
    a, b = models
    out = tmp_path / "D"
    run(a, out, caugym_dir, "--n", "1")
    before = snapshot(out)
    run(b, out, caugym_dir, "--n", "3", "--fresh")
    (kept,) = (out / "superseded").iterdir()
    assert snapshot(kept) == before                        # nothing of the first evaluation is lost
    records = [json.loads(line) for line in (out / "base.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(len(r["all_generated_answers"]) == 3 for r in records)
    config = json.loads((out / "eval_config.json").read_text())
    assert config["model"] == str(b.resolve()) and config["n"] == 3


def test_fresh_with_unchanged_settings_starts_over_too(models, caugym_dir, tmp_path, calls):
    a, _ = models
    out = tmp_path / "D"
    run(a, out, caugym_dir, "--n", "1")
    sampled = len(calls)
    run(a, out, caugym_dir, "--n", "1", "--fresh")
    assert len(calls) > sampled and len(list((out / "superseded").iterdir())) == 1     # sampled again, old kept


def test_records_for_other_items_are_refused_before_the_file_is_touched(models, caugym_dir, tmp_path, calls):
    """Same model and settings, but the JSONL's ids name other problems (another data file with the same ids)."""
    a, _ = models
    out = tmp_path / "D"
    run(a, out, caugym_dir, "--n", "1")
    path = out / "base.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[1]["problem"] = "another question"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"id": "torn')
    before = path.read_bytes()
    with pytest.raises(SystemExit, match=r"problem differs for 1 item\(s\)"):
        run(a, out, caugym_dir, "--n", "1", "--limit", "4")
    assert path.read_bytes() == before                     # not even the torn tail was cut


def test_fingerprint_reads_content_not_size_or_time(models, tmp_path):
    a, _ = models
    copy = tmp_path / "hf"
    copy.mkdir()
    for f in a.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert eval_resume.model_files(copy) == eval_resume.model_files(a)
    weights = copy / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1                                          # one bit of the last weight, same size
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_size == stat.st_size and weights.stat().st_mtime_ns == stat.st_mtime_ns
    assert eval_resume.model_files(copy)["model.safetensors"] != eval_resume.model_files(a)["model.safetensors"]
    (copy / "README.md").write_text("notes")              # not part of the model
    assert "README.md" not in eval_resume.model_files(copy)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        eval_resume.model_files(tmp_path / "nowhere")


# ---- kind 9: one default output directory per model ---------------------------------------------------------------
def test_default_output_is_unique_per_model(models, caugym_dir, tmp_path, calls, monkeypatch):
    a, b = models
    monkeypatch.chdir(tmp_path)
    run(a, None, caugym_dir, "--n", "1")
    run(b, None, caugym_dir, "--n", "3")                   # the second model: no collision, no refusal
    outs = sorted((tmp_path / "runs" / "eval").iterdir())
    fa = eval_resume.fingerprint(eval_resume.model_files(a))[:8]
    fb = eval_resume.fingerprint(eval_resume.model_files(b))[:8]
    assert [o.name for o in outs] == sorted([f"run_a-hf-{fa}", f"run_b-hf-{fb}"])
    assert eval_resume.default_out(tmp_path / "x" / "model.gguf", "0123456789") == \
        pathlib.Path("runs/eval/x-model-01234567")


# ---- items 10 and 11: --limit spread, data directory found and recorded ----------------------------------------
def test_limit_spreads_round_robin_over_types(caugym_dir):
    from caujax.data import load_caugym

    base = load_caugym("base", caugym_dir)
    assert len({it.type for it in base[:14]}) == 1        # the first 14 would be one type: the complaint
    picked = caujax_eval.spread_over_types(base, 14)
    assert sorted(it.type for it in picked) == [t for t in TYPES for _ in range(2)]      # 2 of each
    assert [it.index for it in picked] == sorted(it.index for it in picked)               # in file order
    ps = [it for it in base if it.type == "PS"]
    assert [ps[0], ps[len(ps) // 2]] == [it for it in picked if it.type == "PS"]    # spread, not the first ones
    assert caujax_eval.spread_order(8) == [0, 4, 2, 6, 1, 5, 3, 7]
    assert sorted(caujax_eval.spread_order(11)) == list(range(11))
    ten = caujax_eval.spread_over_types(base, 10)
    assert set(ten) <= set(caujax_eval.spread_over_types(base, 30))                  # a larger limit keeps these
    assert sorted(it.type for it in ten) == sorted([*TYPES, "ATE", "CDE", "ETT"])
    assert caujax_eval.spread_over_types(base, 10) == ten                              # deterministic
    of = {t: [it for it in base if it.type == t] for t in TYPES}
    uneven = of["PN"][:3] + of["PS"][:1] + of["ATE"][:1]          # a type that runs out leaves its turn to others
    assert caujax_eval.spread_over_types(uneven, 4) == [of["PN"][0], of["PN"][1], of["PS"][0], of["ATE"][0]]
    assert len(caujax_eval.spread_over_types(base, 5000)) == len(base)


def test_data_found_beside_the_repository_and_recorded(models, caugym_dir, tmp_path, calls, monkeypatch):
    a, _ = models
    repo = tmp_path / "repo"
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "caugym").symlink_to(caugym_dir.resolve())
    repo.mkdir()
    monkeypatch.setattr(data_items, "REPO", repo)
    monkeypatch.delenv("CAUGYM_DIR", raising=False)
    monkeypatch.chdir(repo)
    caujax_eval.main(["--model", str(a), "--sets", "base", "--limit", "2", "--n", "1", "--out", "o"])
    config = json.loads((repo / "o" / "eval_config.json").read_text())
    assert config["data_dir"] == str((tmp_path / "shared" / "caugym").resolve())
    assert pathlib.Path(config["data_dir"]).is_absolute()


def test_no_data_anywhere_is_a_clear_error_naming_the_places(models, tmp_path, monkeypatch, calls):
    a, _ = models
    monkeypatch.setattr(data_items, "REPO", tmp_path / "repo")
    monkeypatch.delenv("CAUGYM_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        data_items.data_root(None, "CAUGYM_DIR", "CauGym")
    message = str(err.value)
    assert "CAUGYM_DIR is not set" in message and str(tmp_path.parent / "shared" / "caugym") in message
    assert str(tmp_path / "shared" / "caugym") in message and "python -m caujax.data download" in message
    with pytest.raises(SystemExit, match="no CauGym directory found"):
        caujax_eval.main(["--model", str(a), "--sets", "base", "--n", "1", "--out", str(tmp_path / "o")])
    monkeypatch.setenv("CAUGYM_DIR", str(tmp_path / "typo"))           # a named directory is never replaced
    with pytest.raises(FileNotFoundError, match=r"typo does not exist \(CAUGYM_DIR\)"):
        data_items.data_root(None, "CAUGYM_DIR", "CauGym")


@pytest.mark.parametrize("option, message", [
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"), (["--n", "0"], "--n must be >= 1, got 0"),
    (["--top-p", "2"], "--top-p must be in (0, 1], got 2.0"),
    (["--suite", "cladderr"], "--suite 'cladderr' is neither"),
    (["--suite", "causalprobe", "--sets", "X"], "unknown CausalProbe subset(s) ['X']"),
])
def test_a_bad_option_is_one_line_and_status_2_before_anything_loads(models, tmp_path, capsys, calls, option,
                                                                      message):
    a, _ = models
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as refused:
        caujax_eval.main(["--model", str(a), "--out", str(out), *option])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and message in err and "Traceback" not in err
    assert not out.exists() and calls == []


def test_a_set_is_sampled_in_balanced_batches(models, caugym_dir, tmp_path, calls):
    """13 items at --batch-size 4 (byte tokenizer): the 9 prompts of the 1,024-token bucket go as 3, 3, 3 (one
    compiled shape, no batch of 1 decoded alone), the 3 of the 2,048 bucket together, the longest alone: no long
    prompt widens a batch of short ones. eval.balanced_batches keeps the order, with sizes within one for any
    count, within each width."""
    run(models[0], tmp_path / "D", caugym_dir, "--n", "1", "--limit", "13", "--batch-size", "4")
    print("prompt-length buckets per call:", calls.widths)
    assert calls == [3, 3, 3, 3, 1]
    assert [w[0] for w in calls.widths] == [1024, 1024, 1024, 2048, 4096]
    assert all(len(set(w)) == 1 for w in calls.widths)
    for n in (0, 1, 5, 64, 65, 130, 200):
        for most in (1, 7, 64, 100):
            batches = caujax_eval.balanced_batches(list(range(n)), most)
            assert sum(batches, []) == list(range(n)) and len(batches) == -(-n // most)
            assert all(1 <= len(b) <= most for b in batches)
            assert max(map(len, batches), default=0) - min(map(len, batches), default=0) <= 1
    # The demo's case: 199 prompts of one width and one longer prompt, at most 100 a batch.
    width = lambda i: 256 if i < 199 else 512
    assert [len(b) for b in caujax_eval.balanced_batches(list(range(200)), 100, width)] == [99, 100, 1]
    assert [len(b) for b in caujax_eval.balanced_batches(list(range(10)), 4, lambda i: i // 5)] == [2, 3, 2, 3]
