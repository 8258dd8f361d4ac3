"""Issue 13, kind 6: preference rows that carry no preference are dropped before training with one counted warning,
and a run with none left is refused naming its source. DPO: chosen and rejected the same tokens, as given or once
fitted to seq_len. KTO: a completion given for its prompt as both desirable and undesirable."""
from __future__ import annotations

import json
import pathlib
import types
import warnings

import pytest

from caujax.config import DataConfig
from caujax.data.batches import read_examples
from caujax.data.examples import SourceContext, dpo_batches, kto_batches
from caujax.data.pairs import KTOExample, Preference

REPO = pathlib.Path(__file__).resolve().parent.parent


class CharTokenizer:
    """One id per character (ord + 10), a one-line chat template, EOS 3: enough for data/batches.encode."""
    eos_token_id, pad_token_id = 3, 0

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return f"U:{messages[0]['content']}\nA:"

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(ch) + 10 for ch in text] for text in texts]}


def _source(make, examples, source="pairs.jsonl", seq_len=256, batch_size=1):
    cfg = types.SimpleNamespace(data=DataConfig(source=source, seq_len=seq_len, batch_size=batch_size, pad_multiple=0))
    return make(examples, CharTokenizer(), SourceContext(cfg, micro_batch_size=2 if make is kto_batches else 1))


def _write(path: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _one_warning(caught) -> str:
    messages = [str(w.message) for w in caught if "carry no preference" in str(w.message)
                or "carries no preference" in str(w.message)]
    assert len(messages) == 1, messages
    return messages[0]


# --- DPO -------------------------------------------------------------------------------------------------------------
def test_identical_pair_in_a_jsonl_file_is_dropped_with_a_count(tmp_path):
    """The issue's example: a .jsonl pair whose chosen and rejected are the same text."""
    path = _write(tmp_path / "pairs.jsonl", [
        {"id": "a", "prompt": "P(Y=1)?", "chosen": '{"PROB": "0.5"}', "rejected": '{"PROB": "0.7"}'},
        {"id": "same", "prompt": "P(Y=0)?", "chosen": '{"PROB": "0.2"}', "rejected": '{"PROB": "0.2"}'},
        {"id": "b", "prompt": "ATE?", "chosen": '{"PROB": "-0.1"}', "rejected": '{"PROB": "0.1"}'}])
    examples = read_examples(path, "dpo")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = _source(dpo_batches, examples, source=str(path))
    message = _one_warning(caught)
    assert "dropped 1 of 3 DPO pairs" in message and "1 as given, 0 once cut to data.seq_len=256" in message
    assert str(path) in message
    kept_chosen = ["".join(chr(i - 10) for i in c[:-1]) for _, c, _ in src.rows]
    assert kept_chosen == ['{"PROB": "0.5"}', '{"PROB": "-0.1"}']          # the informative pairs, in order


def test_pair_made_identical_by_truncation_is_dropped_only_when_cut():
    """Chosen and rejected share their first 30 characters: under seq_len 20 the loss sees the same tokens."""
    stem = "Step 1: the adjustment formula gives "
    pairs = [Preference("cut", "Q?", stem + "0.31", stem + "0.77"), Preference("ok", "Q?", "0.31", "0.77")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        short = _source(dpo_batches, pairs, seq_len=20)
    assert "dropped 1 of 2 DPO pairs" in _one_warning(caught)
    assert "0 as given, 1 once cut to data.seq_len=20" in _one_warning(caught)
    assert [len(c) for _, c, _ in short.rows] == [5]                     # the "ok" pair: "0.31" + EOS
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                   # room for the whole completion: no warning
        assert len(_source(dpo_batches, pairs, seq_len=256).rows) == 2


def test_a_run_with_no_informative_pair_is_refused_naming_the_source():
    pairs = [Preference(str(i), "Q?", "same answer", "same answer") for i in range(3)]
    with pytest.raises(ValueError, match=r"data.source='my/pairs.jsonl': none of its 3 DPO pairs carries a "
                                         r"preference.*3 as given, 0 once cut"):
        _source(dpo_batches, pairs, source="my/pairs.jsonl")


def test_train_refuses_a_jsonl_of_identical_pairs(tmp_path):
    """End to end through `python -m caujax.train` on configs/tiny.py (random init, tokenizer trained on the text)."""
    from caujax import train
    from caujax.data.examples import generated_items, has_worked_solution
    from caujax.data.prompts import sft_target, user_message

    items = [it for it in generated_items(12, 0) if has_worked_solution(it)]
    rows = [{"id": it.id, "prompt": user_message(it.problem, ""), "chosen": sft_target(it),
             "rejected": sft_target(it)} for it in items]
    path = _write(tmp_path / "same.jsonl", rows)
    with pytest.raises(ValueError, match=rf"data.source='{path}': none of its {len(rows)} DPO pairs"):
        train.main(["--config", str(REPO / "configs/tiny.py"), "--method", "dpo", f"--run_dir={tmp_path / 'run'}",
                    "--steps=1", f"--data.source={path}", "--model.arch.vocab_size=512"])
    assert not (tmp_path / "run").exists()                 # refused before anything is written


# --- KTO -------------------------------------------------------------------------------------------------------------
def test_kto_completion_with_both_labels_is_dropped_and_duplicates_are_kept():
    rows = [KTOExample("a", "Q1?", "0.5", True), KTOExample("a", "Q1?", "0.5", False),    # contradiction
            KTOExample("b", "Q2?", "0.2", True), KTOExample("b2", "Q2?", "0.2", True),    # the same label twice
            KTOExample("c", "Q1?", "0.9", False), KTOExample("d", "Q3?", "0.5", True)]    # other prompt: fine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = _source(kto_batches, rows)
    assert "dropped 2 of 6 KTO rows" in _one_warning(caught)
    assert [label for _, _, label in src.rows] == [True, True, False, True]


def test_kto_rows_contradicting_after_truncation_are_dropped():
    stem = "Step 1: the adjustment formula gives "
    rows = [KTOExample("x", "Q?", stem + "0.31", True), KTOExample("x", "Q?", stem + "0.77", False),
            KTOExample("y", "Q?", "0.31", True), KTOExample("y", "Q?", "0.77", False)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(_source(kto_batches, rows, seq_len=20).rows) == 2
    assert "dropped 2 of 4 KTO rows" in _one_warning(caught)
    with pytest.raises(ValueError, match=r"data.source='pairs.jsonl': none of its 2 KTO rows"):
        _source(kto_batches, rows[:2], seq_len=20)
    assert len(_source(kto_batches, rows, seq_len=256).rows) == 4
