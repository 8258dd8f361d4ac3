"""Loaders for the six CauGym test sets and its two training parquets (online-RL prompts, cold-start SFT traces)."""
import os
import pathlib

from caujax.causal.answer import LACK_CONDITION, infer_type
from caujax.data.items import (Item, check_answer, check_layout, check_type, clean_reason, data_root, read_rows,
                               require, row_error)


TEST_SETS = ("base", "rephrased", "omitted", "deconfounding", "redundant", "insufficient")
TRAIN_SETS = ("rl", "sft")
# Local layout (what `python -m caujax.data download` writes) -> path in the OpenCausaLab/CauGym repository.
FILES = {**{name: (f"test/{name}_dataset.json", f"eval/test_datasets/{name}_dataset.json") for name in TEST_SETS},
         "rl": ("train/online_rl.parquet", "train/online_RL/online_RL/train.parquet"),
         "sft": ("train/cold_start_sft.parquet", "train/cold_start_sft/cold_start_sft/train.parquet"),
         "insufficient_instruction": ("insufficient_instruction.txt", "eval/instructions/insuff_ins.txt")}
# The training prompts end with a space and this; evaluation appends "\n" + instruction instead (DATA.md 1.5).
TRAIN_SUFFIX = " Let's think step by step."
# Sets that are base_dataset rows (or rewrites of them, row for row): CaLM's letter meanings apply.
CALM_ALIGNED = ("base", "rephrased", "omitted")


def path_of(name: str, data_dir: os.PathLike | str | None = None) -> pathlib.Path:
    if name not in FILES:
        raise ValueError(f"unknown CauGym set {name!r}; choose from {', '.join(TEST_SETS + TRAIN_SETS)}, or give "
                         f"the path of a .json/.jsonl file")
    return data_root(data_dir, "CAUGYM_DIR", "CauGym") / FILES[name][0]


def _test_item(row: dict, path, i: int, name: str) -> Item:
    problem = require(row, "problem", str, path, i)
    answer = check_answer(require(row, "answer", str, path, i), path, i)
    if name in TEST_SETS and (answer == LACK_CONDITION) != (name == "insufficient"):
        raise row_error(path, i, f"answer {answer!r:.60} in the {name} set")
    if "id" in row and row["id"] is not None:
        ident = str(row["id"])
    elif "idx" in row and row["idx"] is not None:
        ident = str(row["idx"])
    else:                # base has no id; this matches the ids of its row-aligned rewrites
        ident = f"item_{i:07d}"
    return Item(id=ident, problem=problem, answer=answer, reason=clean_reason(row.get("Reason"), path, i),
                type=check_type(require(row, "Type", str, path, i), path, i), set_name=name, index=i,
                rewriting_status=row.get("rewriting_status"))


def _user_text(row: dict, path, i: int) -> str:
    messages = require(row, "prompt", list, path, i)
    if len(messages) != 1 or not isinstance(messages[0], dict) or not isinstance(messages[0].get("content"), str):
        raise row_error(path, i, f"prompt should be one user message, got {messages!r:.80}")
    return messages[0]["content"].removesuffix(TRAIN_SUFFIX)


def _rl_item(row: dict, path, i: int) -> Item:
    problem = _user_text(row, path, i)
    reward_model = require(row, "reward_model", dict, path, i)
    answer = check_answer(require(reward_model, "ground_truth", str, path, i), path, i)
    kind = infer_type(problem)          # the RL parquet ships no Type
    if kind is None:
        raise row_error(path, i, f"cannot tell the causal quantity from the question: {problem[-200:]!r}")
    extra = row.get("extra_info") or {}
    return Item(id=str(extra.get("index", i)), problem=problem, answer=answer, reason={}, type=kind,
                set_name="rl", index=i)


def _sft_item(row: dict, path, i: int) -> Item:
    problem = _user_text(row, path, i)
    reward_model = require(row, "reward_model", dict, path, i)
    answer = check_answer(require(reward_model, "ground_truth", str, path, i), path, i)
    turns = require(row, "answer", list, path, i)
    if len(turns) != 1 or not isinstance(turns[0], dict) or not isinstance(turns[0].get("content"), str):
        raise row_error(path, i, f"answer should be one assistant message, got {turns!r:.80}")
    return Item(id=require(row, "id", str, path, i), problem=problem, answer=answer,
                reason=clean_reason(row.get("Reason"), path, i),
                type=check_type(require(row, "Type", str, path, i), path, i), set_name="sft", index=i,
                rewriting_status=row.get("rewriting_status"), trace=turns[0]["content"])


def load_caugym(name: str, data_dir: os.PathLike | str | None = None, *, drop_failed: bool = True,
                calm_dir: os.PathLike | str | None = None) -> list[Item]:
    """One CauGym set ("base" ... "insufficient", "rl", "sft") from data_dir or $CAUGYM_DIR.

    drop_failed: drop rows whose rewriting_status is not "success" (the paper's table does; omitted loses 59,
    rephrased 1). calm_dir: also attach CaLM's real_world_meaning (the letter-to-variable map) to base and its
    rewrites, which the worked solutions need and the base prompts lack."""
    path = path_of(name, data_dir)
    rows = read_rows(path)
    if name == "rl":
        items = [_rl_item(row, path, i) for i, row in enumerate(rows)]
    elif name == "sft":
        items = [_sft_item(row, path, i) for i, row in enumerate(rows)]
    else:
        items = [_test_item(row, path, i, name) for i, row in enumerate(rows)]
    if calm_dir is not None and name in CALM_ALIGNED and items:
        items = _with_meanings(items, data_dir, calm_dir)
    if drop_failed:
        items = [it for it in items if it.rewriting_status in (None, "success")]
    return items


def _with_meanings(items: list[Item], data_dir, calm_dir) -> list[Item]:
    from dataclasses import replace

    from caujax.data.calm import meanings_by_problem

    meanings = meanings_by_problem(calm_dir)
    # Rewrites are matched through the base row with the same index: their own text is paraphrased.
    base = items if items[0].set_name == "base" else load_caugym("base", data_dir, drop_failed=False)
    out = []
    for it in items:
        original = base[it.index].problem if it.index < len(base) else None
        out.append(replace(it, real_world_meaning=meanings.get(original)))
    return out


def load_file(path: os.PathLike | str, set_name: str = "generated") -> list[Item]:
    """Any JSON file in the CauGym test-set format (problem, answer, Reason, Type), e.g. `generate` output."""
    if set_name in TRAIN_SETS:
        raise ValueError(f"{set_name!r} is a parquet training set; use load_caugym")
    rows = check_layout(read_rows(path), path, "CauGym")
    return [_test_item(row, path, i, set_name) for i, row in enumerate(rows)]


def load_rl_file(path: os.PathLike | str) -> list[Item]:
    """Any parquet file in the CauGym RL format (train/online_rl.parquet): one user prompt and
    reward_model.ground_truth per row. A row without them raises RowError naming the file and row."""
    path = pathlib.Path(path)
    return [_rl_item(row, path, i) for i, row in enumerate(read_rows(path))]


def load_test_sets(data_dir: os.PathLike | str | None = None, **kwargs) -> dict[str, list[Item]]:
    """All six test sets, keyed by name."""
    return {name: load_caugym(name, data_dir, **kwargs) for name in TEST_SETS}


def insufficient_instruction(data_dir: os.PathLike | str | None = None) -> str:
    """The instruction file shipped beside the data (caujax.data.prompts holds the same text as a constant)."""
    return path_of("insufficient_instruction", data_dir).read_text(encoding="utf-8")
