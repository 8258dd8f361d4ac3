"""CausalProbe-2024 (Chi et al., "Unveiling Causal Reasoning in Large Language Models: Reality or Mirage?",
NeurIPS 2024): loader and the official prompt.

Files CausalProbe-{E,H,M}.json from github.com/Haoang97/CausalProbe-2024 (benchmarks/CausalProbe2024/): a JSON array
of {id, context, question, choice_1..choice_4, answer}; `answer` is the 1-based correct choice (E: easy, H: hard)
or a list of them (M: multiple answers, added to the repository after the paper; it has no working official
scorer). Known defects are kept as they are: E has two golds of 5 (never scorable) and two empty contexts.
"""
from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass

from caujax.data.items import check_layout, read_json_array, read_rows, require, row_error, unique_ids

SUBSETS = ("E", "H", "M")
DEFAULT_SUBSETS = ("E", "H")            # the NeurIPS paper's two sets
REPO = "Haoang97/CausalProbe-2024"
UPSTREAM_DIR = "benchmarks/CausalProbe2024"
# prompts.py, key "prompt_mcqa_causalprobe" (the vanilla setting with context), verbatim: no space after "3." and
# "4.", and the answer cue at the end.
TEMPLATE = ("Context: {context}\nQuestion: {question}\nAnswer Choices:\n1. {choice_1}\n2. {choice_2}\n3.{choice_3}\n"
            "4.{choice_4}\nPick one choice and do not explain. Answer:")


def file_name(subset: str) -> str:
    if subset not in SUBSETS:
        raise ValueError(f"CausalProbe subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    return f"CausalProbe-{subset}.json"


@dataclass(frozen=True)
class ProbeItem:
    """One CausalProbe question. `gold` is the correct choice (E, H) or the sorted tuple of them (M)."""
    id: str
    subset: str
    context: str
    question: str
    choices: tuple[str, str, str, str]
    gold: int | tuple[int, ...]
    index: int = -1

    @property
    def problem(self) -> str:
        """The official prompt text (TEMPLATE filled in); what the model is shown as its user turn."""
        return TEMPLATE.format(context=self.context, question=self.question,
                               **{f"choice_{k + 1}": c for k, c in enumerate(self.choices)})

    @property
    def answer(self) -> str:
        """The gold as text: "3", or "[1, 3]" for M (how the generic records store a ground truth)."""
        return json.dumps(list(self.gold)) if isinstance(self.gold, tuple) else str(self.gold)

    @property
    def type(self) -> str:
        return self.subset

    benchmark = "causalprobe"      # what caujax/external_eval.py reads (see cladder.CladderItem)

    @property
    def multi(self) -> bool:
        """M has several correct choices (an exact set match), E and H one."""
        return self.subset == "M"

    def messages(self) -> list[dict[str, str]]:
        """The official prompt as the one user turn (CausalProbe has no system prompt)."""
        return [{"role": "user", "content": self.problem}]


def _gold(value, subset: str, path, i: int) -> int | tuple[int, ...]:
    if subset == "M":
        if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                               for v in value):
            raise row_error(path, i, f"answer should be a non-empty list of choice numbers, got {value!r:.60}")
        return tuple(sorted(set(value)))
    if not isinstance(value, int) or isinstance(value, bool):
        raise row_error(path, i, f"answer should be one choice number, got {value!r:.60}")
    return value                           # out-of-range golds (E's two 5s) are kept: upstream data, never right


def _item(row: dict, subset: str, path, i: int) -> ProbeItem:
    if not isinstance(row, dict):
        raise row_error(path, i, f"expected an object, got {type(row).__name__}")
    require(row, "answer", object, path, i)        # its kind per subset: _gold
    context = row.get("context") if row.get("context") is not None else ""   # two E rows have an empty context
    if not isinstance(context, str):
        raise row_error(path, i, f"field 'context' should be str, got {type(context).__name__}")
    choices = tuple(require(row, f"choice_{k}", str, path, i) for k in range(1, 5))
    qid = row.get("id")
    return ProbeItem(id=str(qid) if qid is not None else f"row_{i:07d}", subset=subset, context=context,
                     question=require(row, "question", str, path, i), choices=choices,
                     gold=_gold(row["answer"], subset, path, i), index=i)


def load_causalprobe(subset: str, root: os.PathLike | str) -> list[ProbeItem]:
    """Every item of CausalProbe-<subset>.json in `root` (or `root` itself when it is that file), in file order.

    Raises FileNotFoundError for a missing file, RowError (naming the file and row) for a row without a question,
    four choices or an answer of the subset's kind, or an id seen before."""
    root = pathlib.Path(root)
    path = root if root.is_file() else root / file_name(subset)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; fetch it with `python -m caujax.data download --only "
                                f"causalprobe`")
    # E's ints and M's lists sit in one column name: a JSON array keeps Python's types
    rows = check_layout(read_json_array(path, "questions") if path.suffix == ".json" else read_rows(path), path,
                        "CausalProbe")
    return unique_ids([_item(row, subset, path, i) for i, row in enumerate(rows)], path)
