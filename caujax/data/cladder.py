"""CLadder (Jin et al., "CLadder: Assessing Causal Reasoning in Language Models", NeurIPS 2023): loader and prompt.

Two layouts are read, either as a JSON array or as JSON lines:
- v1.5, the Hugging Face release `causal-nlp/CLadder` (split full_v1.5_default): one `prompt` string per row
  (background, given information and question joined by spaces) with `id`, `label` and the metadata at the top
  level. Copies that renamed the fields (`question_id`, `answer`, `question` for the prompt) read the same.
- v1, the GitHub release (cladder-v1-*.json): separate `given_info` and `question`, metadata under `meta`, the
  `reasoning` steps as a dict, and the background in cladder-v1-meta-models.json under the row's `meta.model_id`
  (or a `background` field in the row). The text is joined as the official script does
  (causalbenchmark/eval/run_gpt_v1.5.py: background, a space, given_info, a space, question, each stripped).

The official prompt is its "answer" mode: the system message below and the text followed by a blank line and the
instruction (the same script, `q_type2prompt_suffix['answer']`).
"""
from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass

from caujax.causal.cladder_answer import QUERY_TYPES, RUNG_OF
from caujax.data.items import check_layout, foreign_layout, read_json_array, read_rows, row_error, unique_ids

SYSTEM_PROMPT = ("You are an expert in causal inference. The following question is not a typical commonsense query, "
                 "but rather a meticulously designed question created by a professor specializing in causal "
                 "inference, intended to assess the students' mastery of the course content.")
INSTRUCTION = ('Start your answer with "Yes" or "No", followed by additional reasoning or evidence to support your '
               'explanation.')
# Looked for, in this order, when a directory is given: the full release as `download` writes it, the v1
# balanced file the CLadder README recommends, the partial copy shipped for tests.
FILES = ("cladder-v1.5.json", "cladder-v1-balanced.json", "cladder-v1.5-subset.json")
META_MODELS = "cladder-v1-meta-models.json"


@dataclass(frozen=True)
class CladderItem:
    """One CLadder question. `problem` is the full text (what the official prompt shows), `answer` "yes" or "no"."""
    id: str
    problem: str
    answer: str
    rung: int
    query_type: str
    graph_id: str = ""
    story_id: str = ""
    question_property: str = ""      # easy, hard, commonsense, anticommonsense, nonsense ("" when not shipped)
    formal_form: str = ""
    reasoning: str = ""              # the release's steps joined by newlines ("" when not shipped)
    index: int = -1                  # row index in its file

    @property
    def type(self) -> str:
        """The grouping key the generic evaluation code reads (CauGym items have a task type there)."""
        return self.query_type

    # What caujax/external_eval.py reads of an item of either existing benchmark (CausalProbe's ProbeItem alike).
    benchmark = "cladder"          # external_scoring's suite name
    multi = False                  # one gold answer

    @property
    def gold(self) -> str:
        return self.answer

    def messages(self) -> list[dict[str, str]]:
        """The official chat turns: CLadder's system prompt, then the question and its answer-mode instruction."""
        return messages(self)


def user_message(text: str) -> str:
    """The official user turn: the question text, a blank line, the answer-mode instruction."""
    return f"{text}\n\n{INSTRUCTION}"


def messages(item: CladderItem) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message(item.problem)}]


def sft_row(item: CladderItem) -> dict[str, str]:
    """An SFT row (`python -m caujax.data convert --to sft`): the official system prompt and user turn as one prompt
    (an SFT row has one user message: this is the folded form the evaluation uses for templates without a system
    role), and a completion that opens with "Yes" or "No" as the instruction asks, then the worked steps of
    `reasoning`. Raises ValueError for an item
    without usable reasoning (the v1.5 release ships "nan" lines for backadj)."""
    steps = [line for line in item.reasoning.split("\n") if line.strip() and line.strip() != "nan"]
    if not steps:
        raise ValueError(f"CLadder item {item.id} has no worked reasoning to imitate")
    verdict = "Yes" if item.answer == "yes" else "No"
    return {"id": item.id, "prompt": f"{SYSTEM_PROMPT}\n\n{user_message(item.problem)}",
            "completion": f"{verdict}.\n" + "\n".join(steps) + f"\nSo the answer is {verdict.lower()}."}


def _text(value, what: str, path, i: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise row_error(path, i, f"field {what!r} should be non-empty text, got {value!r:.80}")
    return value


def _reasoning(value) -> str:
    if isinstance(value, dict):                        # v1: {"step0": ..., ..., "end": ...} in order
        return "\n".join(str(v) for v in value.values() if v is not None)
    return value if isinstance(value, str) else ""


def _backgrounds(path: pathlib.Path) -> dict[int, str]:
    """model_id -> background from cladder-v1-meta-models.json beside a v1 questions file ({} when absent)."""
    meta = path.parent / META_MODELS
    if not meta.is_file():
        return {}
    models = read_json_array(meta, "causal model objects")
    out = {}
    for i, m in enumerate(models):
        if "model_id" in m and "background" in m:
            if not isinstance(m["model_id"], int) or isinstance(m["model_id"], bool):
                raise row_error(meta, i, f"model_id should be an integer, got {m['model_id']!r:.40}")
            out[m["model_id"]] = m["background"]
    return out


def _item(row: dict, path: pathlib.Path, i: int, backgrounds) -> CladderItem:
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    field = lambda key: row.get(key) if row.get(key) is not None else meta.get(key)   # noqa: E731
    if row.get("given_info") is not None:              # v1 layout
        background = row.get("background")
        if background is None:
            model_id = meta.get("model_id")
            background = backgrounds().get(model_id if isinstance(model_id, int) else -1)
            if background is None:
                raise row_error(path, i, f"v1 row (given_info + question) without its background: no 'background' "
                                         f"field and model_id {model_id!r} is not in {path.parent / META_MODELS}")
        parts = [_text(background, "background", path, i), _text(row["given_info"], "given_info", path, i),
                 _text(row.get("question"), "question", path, i)]
        text = " ".join(p.strip() for p in parts)
    else:
        key = "prompt" if row.get("prompt") is not None else "question"
        if row.get(key) is None:
            has = sorted(k for k, v in row.items() if v is not None)
            raise row_error(path, i, f"no question text: expected 'prompt' (v1.5), 'question' (a renamed copy) or "
                                     f"'given_info' + 'question' (v1); has {has}")
        text = _text(row[key], key, path, i)
    label = row.get("label") if row.get("label") is not None else row.get("answer")
    if not isinstance(label, str) or label.strip().lower() not in ("yes", "no"):
        raise row_error(path, i, f"answer/label should be 'yes' or 'no', got {label!r:.40}")
    query_type = field("query_type")
    if query_type not in QUERY_TYPES:
        raise row_error(path, i, f"query_type {query_type!r} is not one of {', '.join(QUERY_TYPES)}")
    rung = field("rung")
    try:
        if isinstance(rung, bool) or (isinstance(rung, float) and not rung.is_integer()):
            raise ValueError
        rung = int(rung)
    except (TypeError, ValueError):
        raise row_error(path, i, f"rung should be 1, 2 or 3, got {rung!r}") from None
    if rung != RUNG_OF[query_type]:
        raise row_error(path, i, f"rung {rung} does not match query_type {query_type!r} (rung {RUNG_OF[query_type]})")
    qid = row.get("question_id") if row.get("question_id") is not None else row.get("id")
    return CladderItem(id=str(qid) if qid is not None else f"row_{i:07d}", problem=text,
                       answer=label.strip().lower(), rung=rung, query_type=query_type,
                       graph_id=str(field("graph_id") or ""), story_id=str(field("story_id") or ""),
                       question_property=str(field("question_property") or ""),
                       formal_form=str(field("formal_form") or ""), reasoning=_reasoning(row.get("reasoning")),
                       index=i)


def _rows(path: pathlib.Path) -> list[dict]:
    """A JSON array is parsed with the json module: v1 rows nest a schemaless `meta` (its `given_info` maps
    different keys to numbers or lists per query type) that an Arrow table cannot hold. JSON lines and parquet go
    through `datasets` (items.read_rows)."""
    rows = read_json_array(path, "question objects") if path.suffix == ".json" else read_rows(path)
    return check_layout(rows, path, "CLadder")


def looks_like_cladder(path: os.PathLike | str) -> bool:
    """Does a JSON array or JSON-lines file hold CLadder rows (a `prompt`, or `given_info` + `question`, with a
    `query_type` at the top level or under `meta`) rather than CauGym-format items (`problem`)? Reads the first
    row; False for anything unreadable (the CauGym loader then names the problem)."""
    path = pathlib.Path(path)
    try:
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                row = json.loads(f.readline())
        else:
            rows = json.loads(path.read_text(encoding="utf-8"))
            row = rows[0] if isinstance(rows, list) and rows else None
    except (OSError, ValueError):
        return False
    return foreign_layout(row) == "CLadder"


def resolve(path: os.PathLike | str) -> pathlib.Path:
    """A CLadder file, or the first of FILES inside a directory. Raises FileNotFoundError naming what it tried."""
    path = pathlib.Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in FILES:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no CLadder file in {path}: expected one of {', '.join(FILES)}; fetch the full "
                                f"release with `python -m caujax.data download --only cladder`")
    raise FileNotFoundError(f"{path} does not exist")


def load_cladder(path: os.PathLike | str) -> list[CladderItem]:
    """Every question of a CLadder file (either layout) or of the first of FILES in a directory, in file order.

    Raises FileNotFoundError for a missing file, RowError (a ValueError naming the file and row) for a row without
    text, with an answer other than yes/no, an unknown query type, a rung that does not match it, a v1 row whose
    background cannot be found, or an id seen before."""
    path = resolve(path)
    rows = _rows(path)
    cache: list = []

    def backgrounds():              # read the meta-models file only when a v1 row needs it
        if not cache:
            cache.append(_backgrounds(path))
        return cache[0]

    return unique_ids([_item(row, path, i, backgrounds) for i, row in enumerate(rows)], path, "question id")
