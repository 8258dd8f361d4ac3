"""Data: loaders on the real CauGym/CaLM files, malformed-row errors, exact prompts, SFT targets, baselines, pairs."""
import collections
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import caujax.data.items

from caujax import scoring
from caujax.causal.answer import LACK_CONDITION, TYPES, format_prob, infer_type
from caujax.data import baselines, calm, caugym, download, pairs, prompts
from caujax.data.__main__ import main
from caujax.data.items import RowError


@pytest.fixture(scope="module")
def test_sets(caugym_dir):
    return {name: caugym.load_caugym(name, caugym_dir, drop_failed=False) for name in caugym.TEST_SETS}


@pytest.fixture(scope="module")
def calm_basic(calm_dir):
    return calm.load_calm("basic", calm_dir)


@pytest.fixture(scope="module")
def raw_base(caugym_dir):
    """base_dataset.json read with plain json, independently of the loaders."""
    return json.loads((caugym_dir / "test/base_dataset.json").read_text(encoding="utf-8"))


def test_test_sets_have_700_items_100_per_type(test_sets):
    for name, items in test_sets.items():
        assert len(items) == 700, name
        assert collections.Counter(it.type for it in items) == {t: 100 for t in TYPES}, name
        assert all(it.set_name == name and it.reason for it in items), name
        assert (sum(it.answer == LACK_CONDITION for it in items) == 700) == (name == "insufficient")
    assert len({it.id for it in test_sets["deconfounding"]}) == 700


def test_failed_rewrites_are_dropped_by_default(caugym_dir, test_sets):
    omitted = caugym.load_caugym("omitted", caugym_dir)
    failed = [it for it in test_sets["omitted"] if it.rewriting_status != "success"]
    assert len(omitted) + len(failed) == 700 and len(failed) > 0
    assert all(it.rewriting_status == "success" for it in omitted)
    # the failed rows are verbatim base rows (DATA.md 1.3), which is why the paper drops them
    assert all(it.problem == test_sets["base"][it.index].problem for it in failed)


def test_training_parquets(caugym_dir):
    rl = caugym.load_caugym("rl", caugym_dir)
    sft = caugym.load_caugym("sft", caugym_dir)
    assert len(rl) == 3500 and len(sft) == 75
    assert collections.Counter(it.type for it in rl) == {t: 500 for t in TYPES}
    assert collections.Counter(it.type for it in sft) == {"PN": 25, "PS": 25, "NIE": 25}
    assert not any(it.problem.endswith(caugym.TRAIN_SUFFIX) for it in rl + sft)
    assert all(it.problem.endswith(":") for it in rl + sft)       # "... like {"PROB": "0.1234"}:"
    assert all("</think>" in it.trace and it.reason for it in sft)
    assert all(scoring.parse_ground_truth(it.answer).kind == "prob" for it in rl + sft)


def test_type_inference_agrees_with_the_type_field(test_sets):
    for name in ("base", "deconfounding", "redundant", "insufficient"):
        wrong = [it.id for it in test_sets[name] if infer_type(it.problem) != it.type]
        assert not wrong, (name, wrong[:5])


def test_calm_basic_renders_the_base_prompts_and_answers(calm_basic, raw_base, calm_dir):
    assert len(calm_basic) == 700 and len(calm.load_calm("natural", calm_dir)) == 500
    by_problem = {it.problem: it for it in calm_basic}
    for row in raw_base:
        item = by_problem[row["problem"]]                    # KeyError if the template is off by one byte
        assert json.loads(item.answer)["PROB"] == json.loads(row["answer"])["PROB"]
        assert item.reason == row["Reason"] and item.type == row["Type"]


def test_letter_meanings_reach_base_and_its_rewrites(caugym_dir, calm_dir):
    omitted = caugym.load_caugym("omitted", caugym_dir, calm_dir=calm_dir)
    assert all(it.real_world_meaning for it in omitted)
    assert omitted[0].real_world_meaning.startswith("The real world meaning of each node is defined as follows: A ")


def test_env_vars_and_missing_dirs(monkeypatch, caugym_dir, tmp_path):
    monkeypatch.setenv("CAUGYM_DIR", str(caugym_dir))
    assert len(caugym.load_caugym("sft")) == 75
    monkeypatch.delenv("CAUGYM_DIR")
    # Hide the copies data_root finds by itself (shared/caugym beside the repository or the working directory).
    monkeypatch.setattr(caujax.data.items, "REPO", tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="CAUGYM_DIR"):
        caugym.load_caugym("base")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        caugym.load_caugym("base", tmp_path / "nowhere")


# ---- malformed rows: the error names the file and the row ----
def _write_test_set(root, rows, name="base"):
    path = root / "test" / f"{name}_dataset.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


GOOD = {"problem": "Question: If A is changed to be high, will B be more likely to be high?",
        "answer": '{"ANSWER": "Yes", "PROB": "0.1"}', "Reason": {"Step 1": "x"}, "Type": "ATE"}


@pytest.mark.parametrize("broken,message", [
    ({k: v for k, v in GOOD.items() if k != "answer"}, "row 1: missing field 'answer'"),
    ({**GOOD, "answer": '{"PROB": 0.1'}, "row 1: answer is neither LACK_CONDITION nor JSON"),
    ({**GOOD, "answer": '{"PROB": "abc"}'}, "row 1: answer PROB is not a number"),
    ({**GOOD, "answer": '{"prob": "0.1"}'}, "row 1: answer JSON has no PROB or ANSWER"),
    ({**GOOD, "Type": "XYZ"}, "row 1: Type 'XYZ'"),
    ({**GOOD, "Reason": "Step 1: x"}, "row 1: Reason should map"),
])
def test_malformed_test_rows_name_file_and_row(tmp_path, broken, message):
    path = _write_test_set(tmp_path, [GOOD, broken, GOOD])
    with pytest.raises(RowError, match=message) as err:
        caugym.load_caugym("base", tmp_path)
    assert str(path) in str(err.value)


def test_malformed_parquet_and_calm_rows(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": GOOD["problem"] + caugym.TRAIN_SUFFIX}],
             "reward_model": {"ground_truth": '{"PROB": "0.2"}', "style": "rule"}, "extra_info": {"index": i}}
            for i in range(3)]
    rows[2]["reward_model"]["ground_truth"] = None
    path = tmp_path / "train" / "online_rl.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(RowError, match=r"online_rl.parquet: row 2: missing field 'ground_truth'"):
        caugym.load_caugym("rl", tmp_path)

    line = {"index": 1, "given_info": "g", "Background": {"data_info": "d", "real_world_meaning": "m"},
            "Instruction": "i", "Question": "q", "Type": "ATE", "Reason": {"Step 1": "x"}, "gt_answer": 0.5}
    bad = {**line, "gt_answer": "Yes"}
    (tmp_path / calm.file_name("ATE", "basic")).write_text(json.dumps(line) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RowError, match=r"ATE-P_ATE-basic_EN.json: row 1: gt_answer should be a number"):
        calm.load_calm("basic", tmp_path)


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "test" / "base_dataset.json"
    path.parent.mkdir()
    path.write_text("[{]", encoding="utf-8")
    with pytest.raises(ValueError, match="base_dataset.json"):
        caugym.load_caugym("base", tmp_path)


# ---- prompts ----
@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")),
                                  unk_token="[UNK]")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    return tok


def test_base_prompt_is_exact(tokenizer, test_sets, raw_base):
    prompt = prompts.item_prompt(tokenizer, test_sets["base"][0])
    assert prompt == f"<|user|>\n{raw_base[0]['problem']}\nLet's think step by step.<|end|>\n<|assistant|>\n"
    assert prompt.startswith("<|user|>\nInput Info: Imagine a self-contained, hypothetical world")
    assert prompt.endswith('like {"ANSWER": "Yes", "PROB": "0.1234"}:\nLet\'s think step by step.<|end|>\n'
                           "<|assistant|>\n")


def test_insufficient_prompt_is_exact(tokenizer, test_sets, caugym_dir):
    raw = json.loads((caugym_dir / "test/insufficient_dataset.json").read_text(encoding="utf-8"))
    shipped = (caugym_dir / "insufficient_instruction.txt").read_bytes()
    assert prompts.INSUFFICIENT_INSTRUCTION.encode() == shipped and len(shipped) == 120
    expected = (f"<|user|>\n{raw[0]['problem']}\nLet's think step by step. If the condition is not enough to solve "
                f'the question, output "LACK_CONDITION" as final answer.<|end|>\n<|assistant|>\n')
    assert prompts.item_prompt(tokenizer, test_sets["insufficient"][0]) == expected


def test_tokenizer_without_chat_template_is_refused(tokenizer):
    import copy

    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        prompts.chat_prompt(bare, "problem")


def test_sft_target_for_base_ett_follows_step_7(caugym_dir, calm_dir):
    item = caugym.load_caugym("base", caugym_dir, calm_dir=calm_dir)[0]
    assert json.loads(item.answer)["ANSWER"] == "Yes"        # base's inverted ETT field ...
    assert prompts.sft_target(item) == "\n".join([
        "Let A = traffic congestion, B = apearance, C = temperature, D = rainfull.",
        "Step 1: Check whether treatment (A) is a cause of outcome (B). Node A is a cause of node B because there is "
        "one or more directed paths from A to B (e.g. A->B).",
        "Step 2: Identification of the Causal Effect. P(B|do(A)) can be identified.",
        "Step 3: Find a valid backdoor adjustment set: empty set.",
        "Step 4: ETT=E[B_{A=0}-B_{A=1}|A=0]=P(B=1|A=0)-P(B=1|A=1)",
        "Step 5: P(B=1|A=0)=0.4358\tP(B=1|A=1)=0.0511",
        "Step 6: ETT=0.4358-0.0511=0.3847",
        "Step 7: ETT=0.3847>0 so the answer is No.",
        '{"ANSWER": "No", "PROB": "0.3847"}'])               # ... the target follows the solution


def test_every_sft_target_scores_correct(test_sets, calm_basic):
    for items in (test_sets["base"], test_sets["deconfounding"], test_sets["redundant"], calm_basic):
        for it in items:
            target = prompts.sft_target(it)
            assert scoring.score(target, it.answer, "strict"), (it.set_name, it.id)
    with pytest.raises(ValueError, match="LACK_CONDITION"):
        prompts.sft_target(test_sets["insufficient"][0])


def test_format_prob_matches_caugym_strings():
    assert [format_prob(v) for v in (0.239, 1.0, -0.06, -0.00001, 0.38470000001, 0)] == \
        ["0.239", "1", "-0.06", "0", "0.3847", "0"]


# ---- baselines ----
def test_trivial_baselines(test_sets):
    base = baselines.baseline_table(test_sets["base"], ["always-0", "always-LACK"])
    insufficient = baselines.baseline_table(test_sets["insufficient"], ["always-0", "always-LACK"])
    assert round(100 * base[("always-0", "paper")]["all"], 1) == 27.9
    assert base[("always-LACK", "paper")]["all"] == 0.0
    for rule in scoring.RULES:
        assert insufficient[("always-LACK", rule)]["all"] == 1.0
        assert insufficient[("always-0", rule)]["all"] == 0.0
    assert set(base[("always-0", "strict")]) == {*TYPES, "all"}


def test_baselines_cli_prints_tables(caugym_dir, capsys):
    main(["baselines", "--sets", "insufficient", "--no-solver", "--caugym-dir", str(caugym_dir)])
    out = capsys.readouterr().out
    assert "insufficient (700 items)" in out
    assert "always-LACK  paper   100.0% 100.0% 100.0% 100.0% 100.0% 100.0% 100.0% 100.0%" in out


# ---- preference pairs (with a stand-in maker; the causal engine's is tested with the engine) ----
def _shift_answer(item, seed):
    """A wrong solution: the worked solution with its final PROB moved by a seed-dependent amount."""
    target = prompts.sft_target(item)
    body, last = target.rsplit("\n", 1)
    gt = json.loads(last)
    gt["PROB"] = f"{float(gt['PROB']) + 0.01 * (1 + seed % 7):.4f}"
    return f"{body}\n{json.dumps(gt)}"


def test_pairs_are_deterministic_and_checked(test_sets):
    items = test_sets["deconfounding"][:40]
    a = pairs.dpo_pairs(items, seed=3, make_wrong=_shift_answer)
    assert a == pairs.dpo_pairs(items, seed=3, make_wrong=_shift_answer)
    assert a != pairs.dpo_pairs(items, seed=4, make_wrong=_shift_answer)
    assert pairs.dpo_pairs(items[::-1], seed=3, make_wrong=_shift_answer) == a[::-1]   # per-item, not positional
    for p, it in zip(a, items):
        assert p.prompt == f"{it.problem}\n{prompts.STEP_BY_STEP}"
        assert scoring.score(p.chosen, it.answer, "strict") and not scoring.score(p.rejected, it.answer, "strict")
    kto = pairs.kto_examples(items, seed=3, make_wrong=_shift_answer)
    assert len(kto) == 80 and sum(e.label for e in kto) == 40
    with pytest.raises(ValueError, match="no wrong solution"):
        pairs.dpo_pairs(items[:1], make_wrong=lambda it, s: prompts.sft_target(it))


def test_download_plan_targets_the_loader_layout(tmp_path):
    files = download.plan(tmp_path)
    urls = {str(p.relative_to(tmp_path)): u for u, p in files}
    assert urls["caugym/test/base_dataset.json"] == \
        "https://raw.githubusercontent.com/OpenCausaLab/CauGym/HEAD/eval/test_datasets/base_dataset.json"
    assert urls["calm/PS-P_PS-basic_EN.json"].endswith(
        "CaLM/HEAD/calm_lite_dataset/counterfactual/probability_of_sufficiency/PS-P_PS-basic_EN.json")
    assert len(files) == len(caugym.FILES) + 7 + 5 + 1


def test_pairs_from_the_causal_engine(caugym_dir, calm_dir, test_sets):
    items = caugym.load_caugym("base", caugym_dir, calm_dir=calm_dir)[::50] + test_sets["deconfounding"][::50]
    a = pairs.dpo_pairs(items, seed=0)
    assert a == pairs.dpo_pairs(items, seed=0) and len(a) == len(items)
    for p, it in zip(a, items):
        assert scoring.score(p.chosen, it.answer, "strict") and not scoring.score(p.rejected, it.answer, "strict")
        # same rendering on both sides: the letter line of base items is shared, only the solution differs
        assert p.chosen.split("\n", 1)[0][:4] == p.rejected.split("\n", 1)[0][:4]
    with pytest.warns(UserWarning, match="skipped 1 items"):
        assert pairs.dpo_pairs(test_sets["insufficient"][:1], skip_unusable=True) == []


def test_generate_convert_baselines_cli(tmp_path, capsys):
    gen = tmp_path / "gen.json"
    main(["generate", "--n", "14", "--seed", "5", "--out", str(gen)])
    items = caugym.load_file(gen)
    assert len(items) == 14 and collections.Counter(it.type for it in items) == {t: 2 for t in TYPES}
    for kind in ("sft", "dpo", "kto", "rl"):
        out = tmp_path / f"{kind}.jsonl"
        main(["convert", "--set", str(gen), "--to", kind, "--out", str(out)])
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == (28 if kind == "kto" else 14), kind
        assert all(r["prompt"].endswith("\n" + prompts.STEP_BY_STEP) for r in rows)
    main(["baselines", "--sets", str(gen)])
    assert f"{gen} (14 items)" in capsys.readouterr().out


def test_fetch_writes_atomically_and_refuses_lfs_pointers(tmp_path, caugym_dir):
    # file:// URLs exercise the download code without a network
    src = caugym_dir / "insufficient_instruction.txt"
    dest = tmp_path / "out" / "ins.txt"
    assert download.fetch(src.as_uri(), dest) == 120 and dest.read_bytes() == src.read_bytes()
    pointer = tmp_path / "pointer.json"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 55300000\n")
    with pytest.raises(ValueError, match="LFS pointer"):
        download.fetch(pointer.as_uri(), tmp_path / "out" / "sft.json")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ins.txt"]     # no partial file left
