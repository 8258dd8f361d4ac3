"""Loaders of the existing benchmarks: CLadder (v1.5 and v1 layouts), CausalProbe E/H/M, their official prompts,
bad rows named by file and row, and the download path (no network: the hub and raw URLs are stood in for)."""
from __future__ import annotations

import collections
import json

import pytest

from caujax.data import causalprobe, cladder, download
from caujax.data.items import RowError

BACKGROUND = ("Imagine a self-contained, hypothetical world with only the following conditions, and without any "
              "unmentioned factors or causal relationships: Zorb has a direct effect on plim.")
V1_ROW = {"question_id": 7, "desc_id": "zorb-chain-ate", "given_info": "For those who are not zorb, the probability of "
          "plim is 30%. For those who are zorb, the probability of plim is 70%. ",
          "question": " Will zorb increase the chance of plim?", "answer": "yes",
          "meta": {"story_id": "zorb", "graph_id": "chain", "query_type": "ate", "rung": 2, "model_id": 4,
                   "formal_form": "E[Y | do(X = 1)] - E[Y | do(X = 0)]", "given_info": {"p(Y | X)": [0.3, 0.7]}},
          "reasoning": {"step0": "Let X = zorb; Y = plim.", "step1": "X->Y", "end": "0.40 > 0"}}


def test_shared_cladder_copy_loads_with_the_readme_counts(cladder_dir):
    items = cladder.load_cladder(cladder_dir)
    assert len(items) == 2661 and len({it.id for it in items}) == 2661
    assert round(100 * sum(it.answer == "yes" for it in items) / len(items), 1) == 49.3
    assert collections.Counter(it.rung for it in items) == {1: 863, 2: 761, 3: 1037}
    assert collections.Counter(it.query_type for it in items)["det-counterfactual"] == 407
    assert all(it.problem.endswith("?") and it.type == it.query_type for it in items)


def test_v1_layout_joins_background_given_info_and_question(tmp_path):
    (tmp_path / "cladder-v1-meta-models.json").write_text(json.dumps([{"model_id": 4, "background": BACKGROUND}]))
    path = tmp_path / "cladder-v1-balanced.json"
    inline = {**V1_ROW, "question_id": 8, "background": BACKGROUND + " ", "meta": {**V1_ROW["meta"], "model_id": 99}}
    path.write_text(json.dumps([V1_ROW, inline]))
    first, second = cladder.load_cladder(tmp_path)          # a directory: the v1 balanced file is found
    assert first.problem == (f"{BACKGROUND} For those who are not zorb, the probability of plim is 30%. For those "
                             f"who are zorb, the probability of plim is 70%. Will zorb increase the chance of plim?")
    assert second.problem == first.problem and (first.id, second.id) == ("7", "8")
    assert first.reasoning == "Let X = zorb; Y = plim.\nX->Y\n0.40 > 0"
    assert (first.rung, first.query_type, first.graph_id, first.story_id) == (2, "ate", "chain", "zorb")
    user = cladder.messages(first)[1]["content"]
    assert user == first.problem + "\n\n" + cladder.INSTRUCTION and cladder.messages(first)[0]["role"] == "system"


def test_v15_renamed_copy_as_json_lines(tmp_path):
    rows = [{"question_id": 1, "question": BACKGROUND + " Is plim likely?", "answer": "No", "rung": 1,
             "query_type": "marginal", "graph_id": "chain", "story_id": "zorb", "question_property": "nonsense",
             "reasoning": "a\nb"},
            {"id": 2, "prompt": BACKGROUND + " Is zorb likely?", "label": "yes", "rung": 1, "query_type": "marginal"}]
    path = tmp_path / "copy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = cladder.load_cladder(path)
    assert [(it.id, it.answer, it.question_property) for it in items] == [("1", "no", "nonsense"), ("2", "yes", "")]


@pytest.mark.parametrize("change, message", [
    ({"answer": "maybe"}, "answer/label should be 'yes' or 'no'"),
    ({"meta": {**V1_ROW["meta"], "query_type": "ATE"}}, "query_type 'ATE' is not one of"),
    ({"meta": {**V1_ROW["meta"], "rung": 3}}, "rung 3 does not match query_type 'ate'"),
    ({"meta": {**V1_ROW["meta"], "model_id": 5}}, "without its background"),
    ({"question": ""}, "field 'question' should be non-empty text"),
])
def test_a_bad_cladder_row_names_the_file_and_the_row(tmp_path, change, message):
    (tmp_path / "cladder-v1-meta-models.json").write_text(json.dumps([{"model_id": 4, "background": BACKGROUND}]))
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{**V1_ROW, "question_id": 1}, {**V1_ROW, **change}]))
    with pytest.raises(RowError, match=f"q.json: row 1: .*{message}"):
        cladder.load_cladder(path)


def test_cladder_duplicate_ids_non_objects_and_missing_files(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{**V1_ROW, "background": BACKGROUND}] * 2))
    with pytest.raises(RowError, match="row 1: question id 7 already used by row 0"):
        cladder.load_cladder(path)
    path.write_text(json.dumps([{**V1_ROW, "background": BACKGROUND}, "text"]))
    with pytest.raises(RowError, match="row 1: expected an object"):
        cladder.load_cladder(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no CLadder file in .*cladder-v1.5.json"):
        cladder.load_cladder(tmp_path / "empty")


def test_causalprobe_subsets_load_with_the_readme_baselines(causalprobe_dir):
    sizes = {"E": 3255, "H": 3459, "M": 3440}
    majority = {"E": 37.5, "H": 29.3, "M": 13.5}
    for subset in causalprobe.SUBSETS:
        items = causalprobe.load_causalprobe(subset, causalprobe_dir)
        top, count = collections.Counter(it.gold for it in items).most_common(1)[0]
        assert len(items) == sizes[subset] and round(100 * count / len(items), 1) == majority[subset]
        assert isinstance(top, tuple) == (subset == "M")


def test_causalprobe_official_prompt_is_the_template_verbatim():
    item = causalprobe.ProbeItem("1", "E", "C.", "Why?", ("a", "b", "c", "d"), 3)
    assert item.problem == ("Context: C.\nQuestion: Why?\nAnswer Choices:\n1. a\n2. b\n3.c\n4.d\n"
                            "Pick one choice and do not explain. Answer:")
    assert (item.answer, item.type) == ("3", "E")
    assert causalprobe.ProbeItem("1", "M", "", "Why?", ("a", "b", "c", "d"), (1, 3)).answer == "[1, 3]"


@pytest.mark.parametrize("subset, change, message", [
    ("E", {"answer": [1, 2]}, "answer should be one choice number"),
    ("M", {"answer": 2}, "answer should be a non-empty list"),
    ("H", {"choice_3": None}, r"missing field 'choice_3' \(absent or null; has \['answer', 'choice_1'"),
    ("E", {"answer": None}, r"missing field 'answer' \(absent or null; has \['choice_1'"),
    ("E", {"question": 5}, "field 'question' should be str"),
])
def test_a_bad_causalprobe_row_names_the_file_and_the_row(tmp_path, subset, change, message):
    good = {"id": 1, "context": "c", "question": "q", "choice_1": "a", "choice_2": "b", "choice_3": "c",
            "choice_4": "d", "answer": [1] if subset == "M" else 1}
    (tmp_path / causalprobe.file_name(subset)).write_text(json.dumps([good, {**good, "id": 2, **change}]))
    with pytest.raises(RowError, match=f"CausalProbe-{subset}.json: row 1: {message}"):
        causalprobe.load_causalprobe(subset, tmp_path)


def test_download_plans_causalprobe_and_writes_cladder_through_datasets(tmp_path, monkeypatch):
    urls = {str(p.relative_to(tmp_path)): u for u, p in download.plan(tmp_path, sources=("causalprobe",))}
    assert urls == {f"causalprobe/CausalProbe-{s}.json": "https://raw.githubusercontent.com/Haoang97/"
                    f"CausalProbe-2024/HEAD/benchmarks/CausalProbe2024/CausalProbe-{s}.json" for s in "EHM"}
    import datasets

    rows = [{"id": 3, "prompt": BACKGROUND + " Is plim likely?", "label": "no", "reasoning": "x", "rung": 1,
             "query_type": "marginal", "graph_id": "chain", "story_id": "zorb", "question_property": "nonsense",
             "formal_form": "P(Y)"}]
    asked = []
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda *a, **k: asked.append((a, k)) or datasets.Dataset.from_list(rows))
    assert download.fetch_cladder(tmp_path) == 1
    assert asked == [((download.CLADDER_DATASET,), {"split": download.CLADDER_SPLIT, "revision": None})]
    assert [it.answer for it in cladder.load_cladder(tmp_path / "cladder")] == ["no"]
    assert not list((tmp_path / "cladder").glob("*.partial.json"))
    with pytest.raises(ValueError, match="unknown data source"):
        download.download(tmp_path, sources=("cladder", "copa"))


@pytest.mark.parametrize("content, message", [
    ('[{"model_id": 4, "background": "B"', "cladder-v1-meta-models.json: not a JSON file: Expecting"),
    ("", "cladder-v1-meta-models.json: the file is empty"),
    ("[1, 2, 3]", "cladder-v1-meta-models.json: row 0: expected an object, got int"),
    ('[{"model_id": "abc", "background": "B"}]', "cladder-v1-meta-models.json: row 0: model_id should be an integer"),
])
def test_a_bad_meta_models_file_is_named(tmp_path, content, message):
    (tmp_path / "q.json").write_text(json.dumps([V1_ROW]))
    (tmp_path / cladder.META_MODELS).write_text(content)
    with pytest.raises(ValueError, match=message):
        cladder.load_cladder(tmp_path / "q.json")


def test_a_file_of_another_benchmark_is_named_as_such(tmp_path):
    from caujax.data import caugym

    probe = tmp_path / "CausalProbe-E.json"
    probe.write_text(json.dumps([{"id": 1, "context": "c", "question": "q", "choice_1": "a", "choice_2": "b",
                                  "choice_3": "c", "choice_4": "d", "answer": 3}]))
    ladder = tmp_path / "ladder.json"
    ladder.write_text(json.dumps([{**V1_ROW, "background": BACKGROUND}]))
    with pytest.raises(ValueError, match="a CausalProbe file, not CauGym items; evaluate it with `--suite causalprobe"):
        caugym.load_file(probe)
    with pytest.raises(ValueError, match="a CausalProbe file, not CLadder items"):
        cladder.load_cladder(probe)
    with pytest.raises(ValueError, match="a CLadder file, not CauGym items; evaluate it with `--suite cladder"):
        caugym.load_file(ladder)


def test_json_lines_under_a_json_name_and_a_fractional_rung(tmp_path):
    path = tmp_path / "q.json"
    path.write_text("".join(json.dumps({**V1_ROW, "background": BACKGROUND, "question_id": q}) + "\n" for q in (7, 8)))
    assert [it.id for it in cladder.load_cladder(path)] == ["7", "8"]
    path.write_text(json.dumps([{**V1_ROW, "background": BACKGROUND, "meta": {**V1_ROW["meta"], "rung": 2.7}}]))
    with pytest.raises(RowError, match="row 0: rung should be 1, 2 or 3, got 2.7"):
        cladder.load_cladder(path)


def test_convert_makes_sft_rows_with_the_evaluation_prompt(tmp_path, capsys):
    """The prompt is what the evaluation shows (system prompt folded into the user turn); the completion answers
    first, as the instruction asks, then the release's steps; an item without reasoning is skipped and counted."""
    from caujax.data.__main__ import main

    path, out = tmp_path / "q.json", tmp_path / "sft.jsonl"
    path.write_text(json.dumps([{**V1_ROW, "background": BACKGROUND},
                                {**V1_ROW, "question_id": 8, "background": BACKGROUND, "reasoning": "nan"}]))
    assert main(["convert", "--set", str(path), "--to", "sft", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    item = cladder.load_cladder(path)[0]
    assert len(rows) == 1 and rows[0]["id"] == "7"
    assert rows[0]["prompt"] == f"{cladder.SYSTEM_PROMPT}\n\n{cladder.user_message(item.problem)}"
    assert rows[0]["completion"] == "Yes.\nLet X = zorb; Y = plim.\nX->Y\n0.40 > 0\nSo the answer is yes."
    said = capsys.readouterr().out
    assert "wrote 1 sft rows from 2 CLadder items" in said and "(1 without worked reasoning skipped)" in said
