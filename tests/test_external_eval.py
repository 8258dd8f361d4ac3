"""python -m caujax.eval --suite cladder / causalprobe end to end on a tiny model: JSONL, tables, PNG, rescoring,
the official prompts under the chat template, and python -m caujax.data baselines --json on CLadder files."""
from __future__ import annotations

import json

import pytest

from caujax import eval as caujax_eval
from caujax import external_eval
from caujax import external_scoring as xs
from caujax.data import cladder
from caujax.data.__main__ import main as data_main
from model_fixtures import make_tiny_checkpoint_with_tokenizer

ARGS = ["--n", "1", "--max-new-tokens", "4", "--batch-size", "10", "--temperature", "1.0"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_checkpoint_with_tokenizer(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def runs(model_dir, tmp_path_factory, cladder_dir, causalprobe_dir):
    out = {}
    for suite, data in (("cladder", cladder_dir), ("causalprobe", causalprobe_dir)):
        out[suite] = tmp_path_factory.mktemp(suite)
        report = caujax_eval.main(["--model", str(model_dir), "--suite", suite, "--data-dir", str(data),
                                   "--limit", "20", "--out", str(out[suite]), *ARGS])
        out[suite + "_report"] = report
    return out


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_both_suites_write_jsonl_scores_and_png(runs):
    assert sorted(runs["cladder_report"]) == ["cladder"]
    assert sorted(runs["causalprobe_report"]) == ["causalprobe_E", "causalprobe_H"]
    for suite, sets in (("cladder", ["cladder"]), ("causalprobe", ["causalprobe_E", "causalprobe_H"])):
        for name in sets:
            records = _records(runs[suite] / f"{name}.jsonl")
            assert len(records) == 20 and all(len(r["all_generated_answers"]) == 1 for r in records)
            assert (runs[suite] / f"{name}.png").stat().st_size > 1000
            rows = json.loads((runs[suite] / f"{name}.scores.json").read_text())
            assert {"model (official)", "model (final)"} <= set(rows)
    rows = runs["cladder_report"]["cladder"]
    assert {"always-yes", "solver"} <= set(rows) and any(k.startswith("majority (always-") for k in rows)
    # --limit 20 spreads over the ten query types: two of each, and every rung column is there
    assert {"rung 1", "rung 2", "rung 3", "ate", "det-counterfactual", "all"} <= set(rows["model (official)"])
    assert rows["solver"]["all"] >= 0.7                  # the solver answers most items and is right on them
    probe = runs["causalprobe_report"]["causalprobe_E"]
    assert probe["uniform random"]["all"] == pytest.approx(0.25) and "model (official, valid)" in probe


def test_rescoring_the_jsonl_gives_the_printed_numbers(runs):
    for suite, name in (("cladder", "cladder"), ("causalprobe", "causalprobe_E"), ("causalprobe", "causalprobe_H")):
        report = runs[suite + "_report"][name]
        for rule in xs.RULES:
            right = total = 0
            for record in _records(runs[suite] / f"{name}.jsonl"):
                gold = record["answer"] if suite == "cladder" else int(record["answer"])
                for reply in record["all_generated_answers"]:
                    right += xs.predict(suite, rule, reply) == gold
                    total += 1
            assert report[f"model ({rule})"]["all"] == pytest.approx(right / total), (name, rule)


def test_prompts_are_the_official_ones_under_the_chat_template(runs, model_dir, cladder_dir):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    item = cladder.load_cladder(cladder_dir)[0]
    prompt = external_eval.item_prompt(tokenizer, item)
    assert prompt.startswith(tokenizer.bos_token + "<system>" + cladder.SYSTEM_PROMPT + "<|end|><user>")
    assert prompt.endswith(item.problem + "\n\n" + cladder.INSTRUCTION + "<|end|><assistant>")
    records = {r["id"]: r for r in _records(runs["causalprobe"] / "causalprobe_E.jsonl")}
    assert all(r["problem"].endswith("Pick one choice and do not explain. Answer:") for r in records.values())


def test_a_template_without_a_system_role_gets_it_folded_into_the_user_turn(model_dir, cladder_dir):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role "
                               "not supported') }}{% endif %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}")
    item = cladder.load_cladder(cladder_dir)[0]
    assert external_eval.item_prompt(tokenizer, item) == (f"<user>{cladder.SYSTEM_PROMPT}\n\n{item.problem}\n\n"
                                                         f"{cladder.INSTRUCTION}")


def test_baselines_json_reads_cladder_in_either_layout(cladder_dir, tmp_path, capsys):
    shared = cladder.resolve(cladder_dir)
    rows = json.loads(shared.read_text())[:60]
    v15 = tmp_path / "v15.json"
    v15.write_text(json.dumps(rows))
    v1 = tmp_path / "v1.jsonl"         # the same questions cut into background, given_info and question

    def v1_row(r):
        text = r["prompt"]
        bg_end, q_start = text.index(": ") + 1, text.rstrip("?").rindex(". ") + 2
        return {"question_id": r["question_id"], "background": text[:bg_end], "given_info": text[bg_end:q_start],
                "question": text[q_start:], "answer": r["answer"],
                "meta": {"query_type": r["query_type"], "rung": r["rung"]}}
    v1.write_text("".join(json.dumps(v1_row(r)) + "\n" for r in rows))
    assert [it.problem for it in cladder.load_cladder(v1)] == [r["prompt"] for r in rows]
    assert data_main(["baselines", "--sets", f"{v15},{v1}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {str(v15), str(v1)}
    first = report[str(v15)]
    assert first["n"] == 60 and 0.8 <= first["solver_coverage"] <= 1 and first["solver_accuracy"] >= 0.95
    assert first["always-yes"] == pytest.approx(sum(r["answer"] == "yes" for r in rows) / 60)
    assert report[str(v1)]["n"] == 60


def test_baselines_json_keeps_caugym_files(tmp_path, capsys):
    gen = tmp_path / "gen.json"
    data_main(["generate", "--n", "7", "--seed", "1", "--out", str(gen)])
    capsys.readouterr()
    assert data_main(["baselines", "--sets", str(gen), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)[str(gen)]
    assert summary["n"] == 7 and summary["solver_coverage"] == 1.0 and summary["solver_accuracy"] == 1.0
    assert 0 <= summary["always-0 (paper)"] <= 1


def test_the_majority_baseline_is_the_whole_sets_answer_not_the_samples():
    """With --limit the sample's own majority would be picked after seeing its golds (eval passes the whole set)."""
    from caujax.data.cladder import CladderItem
    from caujax.external_eval import baseline_rows

    whole = [CladderItem(str(i), "x", "yes" if i < 6 else "no", 1, "marginal") for i in range(10)]
    sample = whole[6:]                                          # all "no"
    assert baseline_rows(sample, whole)["majority (always-yes)"]["all"] == 0.0
    assert baseline_rows(sample)["majority (always-no)"]["all"] == 1.0
