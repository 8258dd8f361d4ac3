"""The uniform problem record shared by every loader, and the checked reading of JSON / parquet rows into it."""
import json
import os
import pathlib
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any

from caujax.causal.answer import LACK_CONDITION, TYPES


@dataclass(frozen=True)
class Item:
    """One causal problem, whatever file it came from.

    `answer` is always a CauGym-style answer string: '{"ANSWER": "Yes", "PROB": "0.3847"}', '{"PROB": "0.239"}',
    '{"ANSWER": "No"}' (CaLM natural) or 'LACK_CONDITION'; `caujax.scoring.score` reads it."""
    id: str                      # the file's own id/idx when it has one, else item_<row index>, 7 digits
    problem: str                 # the question text, without any "Let's think step by step." suffix
    answer: str
    reason: dict[str, str] = field(hash=False)   # "Step 1".."Step 7", absent steps dropped; {} when none shipped
    type: str = ""               # one of TYPES
    set_name: str = ""           # base, rephrased, ..., rl, sft, calm_basic, calm_natural, generated
    index: int = -1              # row index in its file (rephrased/omitted row i is a rewrite of base row i)
    rewriting_status: str | None = None
    real_world_meaning: str | None = None    # CaLM Background.real_world_meaning: which letter is which variable
    trace: str | None = None                 # a shipped model solution (the cold-start SFT R1 trace)


class RowError(ValueError):
    """A row that does not have the fields a loader needs; the message names the file and the row index."""


def row_error(path: os.PathLike | str, row: int, msg: str) -> RowError:
    return RowError(f"{path}: row {row}: {msg}")


JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
              type(None): "null"}


def read_json_array(path: os.PathLike | str, what: str = "rows") -> list[dict[str, Any]]:
    """The objects of a JSON array file, parsed with the json module (Python's own types: a field may mix ints and
    lists, or nest schemaless objects, where an Arrow table cannot). Raises FileNotFoundError, ValueError naming
    the file (empty, not JSON with its line and column, not an array, an empty array) and RowError for an element
    that is not an object."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist" + (" as a file (it is a directory)" if path.is_dir() else ""))
    rows = _json_rows(path, what)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise row_error(path, i, f"expected an object, got {type(row).__name__}: {row!r:.80}")
    return rows


def _json_rows(path: pathlib.Path, what: str) -> list:
    """The rows of a .json (an array, or JSON lines as `datasets` allows) or .jsonl file; ValueError naming the file
    and what is wrong, in the file's terms (`datasets` says StopIteration for an empty file and gives a syntax
    error no position)."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError(f"{path}: the file is empty; expected a JSON array of {what}")
    if path.suffix != ".jsonl":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            if _lines_problem(text) is not None:
                raise ValueError(f"{path}: not a JSON file: {e}") from None
            rows = None                                   # JSON lines under a .json name
        if rows is not None:
            if not isinstance(rows, list):
                raise ValueError(f"{path}: expected a JSON array of {what}, got a JSON {JSON_TYPES[type(rows)]}")
            if not rows:
                raise ValueError(f"{path}: the JSON array holds no {what}")
            return rows
    if problem := _lines_problem(text):
        raise ValueError(f"{path}: {problem}")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def foreign_layout(row: Any) -> str | None:
    """What a first row that is not the expected layout looks like, for the error message: "CLadder", "CausalProbe"
    or "CauGym" (None when it is none of them)."""
    if not isinstance(row, dict):
        return None
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    if all(f"choice_{k}" in row for k in range(1, 5)):
        return "CausalProbe"
    if ("problem" not in row and ("prompt" in row or "given_info" in row or "question" in row)
            and ("query_type" in row or "query_type" in meta)):
        return "CLadder"
    if "problem" in row and ("Reason" in row or "answer" in row):
        return "CauGym"
    return None


HOW_TO_READ = {"CLadder": "evaluate it with `--suite cladder --data-dir FILE`; `python -m caujax.data baselines` and "
                          "`convert` read it as it is (.json/.jsonl)",
               "CausalProbe": "evaluate it with `--suite causalprobe --data-dir DIR` (the directory holding "
                              "CausalProbe-E/H/M.json)",
               "CauGym": "evaluate it with `--suite FILE`; baselines and convert take it as `--sets`/`--set FILE`"}


def check_layout(rows: list, path, expected: str) -> list:
    """`rows` when their first row is not recognisably another benchmark's; else ValueError saying which one it is
    and how to read it (a CausalProbe file given where CauGym items are read would otherwise fail on row 0 as
    'missing field problem')."""
    found = foreign_layout(rows[0]) if rows else None
    if found is not None and found != expected:
        raise ValueError(f"{path}: a {found} file, not {expected} items; {HOW_TO_READ[found]}")
    return rows


def unique_ids(items: list, path: os.PathLike | str, what: str = "id") -> list:
    """`items` (with an .id each, in file row order) when no id repeats; else RowError naming both rows."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.id in seen:
            raise row_error(path, i, f"{what} {item.id} already used by row {seen[item.id]}")
        seen[item.id] = i
    return items


def _first_char(path: pathlib.Path) -> str:
    with open(path, encoding="utf-8") as f:
        while (c := f.read(1)) and c.isspace():
            pass
    return c


def _lines_problem(text: str) -> str | None:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            return f"line {n}: not valid JSON: {e}"
        if not isinstance(value, dict):
            return f"line {n}: expected a JSON object per line, got a JSON {JSON_TYPES[type(value)]}"
    return None


def read_rows(path: os.PathLike | str) -> list[dict[str, Any]]:
    """Rows of a JSON array, JSON-lines or parquet file, read with the `datasets` json/parquet builders.

    The builders run against a throwaway cache directory: nothing touches the network or the user's HF cache,
    and a fixed file cannot be shadowed by a stale cached copy of a broken one."""
    import datasets              # deferred: importing datasets costs about half a second

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist" + (" as a file (it is a directory)" if path.is_dir() else ""))
    json_file = path.suffix != ".parquet"
    if json_file and path.suffix == ".json" and _first_char(path) == "{":
        _json_rows(path, "rows")           # one object, or JSON lines: only the json module tells them apart
    reader = datasets.Dataset.from_json if json_file else datasets.Dataset.from_parquet
    was_enabled, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)   # its "Failed to load JSON" line: we say it below
    try:
        with tempfile.TemporaryDirectory(prefix="caujax-ds-") as cache:
            return reader(str(path), keep_in_memory=True, cache_dir=cache).to_list()
    except Exception as e:       # arrow/json errors do not name the file; re-raise with it
        if json_file:
            _json_rows(path, "rows")       # says what is wrong in the file's terms when the json module sees it
        raise ValueError(f"{path}: cannot be read as a table of rows: {type(e).__name__}: {e}") from e
    finally:
        datasets.logging.set_verbosity(verbosity)
        if was_enabled:
            datasets.enable_progress_bars()


def require(row: dict, key: str, kind: type, path, i: int):
    """row[key], checked to be present, not null and of `kind`."""
    if row.get(key) is None:
        has = sorted(k for k, v in row.items() if v is not None)
        raise row_error(path, i, f"missing field {key!r} (absent or null; has {has})")
    value = row[key]
    if not isinstance(value, kind):
        raise row_error(path, i, f"field {key!r} should be {kind.__name__}, got {type(value).__name__}: {value!r:.80}")
    return value


def check_answer(answer: str, path, i: int) -> str:
    """A ground-truth string must be LACK_CONDITION or a JSON object with a numeric PROB or a Yes/No ANSWER."""
    if answer.strip() == LACK_CONDITION:
        return answer
    try:
        obj = json.loads(answer)
    except json.JSONDecodeError as e:
        raise row_error(path, i, f"answer is neither {LACK_CONDITION} nor JSON: {answer!r:.80} ({e})") from None
    if not isinstance(obj, dict) or not ("PROB" in obj or "ANSWER" in obj):
        raise row_error(path, i, f"answer JSON has no PROB or ANSWER key: {answer!r:.80}")
    if "PROB" in obj:
        try:
            float(obj["PROB"])
        except (TypeError, ValueError):
            raise row_error(path, i, f"answer PROB is not a number: {answer!r:.80}") from None
    if "ANSWER" in obj and obj["ANSWER"] not in ("Yes", "No"):
        raise row_error(path, i, f"answer ANSWER is not Yes/No: {answer!r:.80}")
    return answer


def check_type(value: str, path, i: int) -> str:
    if value not in TYPES:
        raise row_error(path, i, f"Type {value!r} is not one of {TYPES}")
    return value


def clean_reason(reason: Any, path, i: int) -> dict[str, str]:
    """Steps in numeric order with null steps dropped (arrow fills absent Step k with None)."""
    if reason is None:
        return {}
    if not isinstance(reason, dict) or not all(isinstance(v, (str, type(None))) for v in reason.values()):
        raise row_error(path, i, f"Reason should map 'Step k' to text, got {reason!r:.80}")
    steps = {k: v for k, v in reason.items() if v is not None}
    bad = [k for k in steps if not re.fullmatch(r"Step \d+", k)]
    if bad:
        raise row_error(path, i, f"Reason has keys {bad} that are not 'Step k'")
    return dict(sorted(steps.items(), key=lambda kv: int(kv[0].split()[1])))


def yes_no_from_reason(reason: dict[str, str]) -> str:
    """Yes/No as the worked solution states it (its last step), the convention for ETT and near-zero effects.

    A one-step CDE solution ("The edge X->Y does not exist.") states no answer; its ground truth is No."""
    if not reason:
        raise ValueError("no Reason to read a Yes/No from")
    found = re.findall(r"answer is (Yes|No)\b", list(reason.values())[-1])
    return found[-1] if found else "No"


# The checkout that holds caujax/ (site-packages for an installed package): shared/ and data/cache/ are looked
# for beside it as well as beside the current directory. Tests point it elsewhere to hide the real data.
REPO = pathlib.Path(__file__).resolve().parents[2]


def data_places(what: str, shared: str | None = None) -> list[pathlib.Path]:
    """Where `data_root` looks when neither a directory nor the environment variable is given, in order:
    shared/<shared> beside the repository and beside the current directory (how the demo, tests/conftest.py and CI
    lay the data out), then data/cache/<what> under the current directory and the repository (where
    `python -m caujax.data download` writes by default). <what> is lower-cased (caugym, calm, cladder,
    causalprobe); `shared` defaults to it (the existing benchmarks sit in shared/external/<what>)."""
    sub = what.lower()
    cwd = pathlib.Path.cwd()
    inside = shared or sub
    places = [REPO.parent / "shared" / inside, cwd.parent / "shared" / inside, cwd / "data" / "cache" / sub,
              REPO / "data" / "cache" / sub]
    return list(dict.fromkeys(p.resolve() for p in places))      # one entry per directory, order kept


def data_root(explicit: os.PathLike | str | None, env_var: str, what: str, shared: str | None = None
              ) -> pathlib.Path:
    """The data directory of `what` ("CauGym" or "CaLM"), absolute: the explicit argument, else $env_var, else
    the first of `data_places(what)` that exists.

    Raises FileNotFoundError when the explicit directory or the one $env_var names does not exist (a directory
    asked for by name is never replaced by another), or when none is given and no place exists; the message
    names every place looked at and how to fetch the files."""
    fetch = (f"fetch the files with `python -m caujax.data download --only {what.lower()}` (writes "
             f"data/cache/{what.lower()})")
    if explicit is not None or os.environ.get(env_var):
        raw, source = (explicit, "given explicitly") if explicit is not None else (os.environ[env_var], env_var)
        path = pathlib.Path(raw).expanduser()
        if path.is_file():
            raise FileNotFoundError(f"{path} is a file ({source}); give the {what} directory that holds the set files")
        if not path.is_dir():
            kind = "file" if path.suffix else "directory"
            raise FileNotFoundError(f"{what} {kind} {path} does not exist ({source}); {fetch}")
        return path.resolve()
    places = data_places(what, shared)
    for path in places:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"no {what} directory found: {env_var} is not set and none of "
                            f"{', '.join(str(p) for p in places)} exists; pass the directory, set {env_var}, or "
                            f"{fetch}")
