"""When an evaluation may continue files already in its output directory: the model's content fingerprint, the
settings that must match, the per-record check, and moving a previous evaluation aside (--fresh).

Resuming appends to generations JSONL files and scores old and new lines together, so every line must come from
the same model and the same sampling. Two guards (issue 13, kinds 2 and 9):
- eval_config.json names the model by the SHA-256 of its files and records the sampling settings; a run whose
  fingerprint or settings differ is refused before anything is loaded or written;
- each JSONL record carries its prompt's hash and its sample count; a record that does not fit the item with its
  id (another problem, answer, chat template or n) is refused before the file is touched.

Why a full SHA-256 rather than file sizes and times, or a header plus samples: sizes and mtimes are not content (a
copied export has new mtimes, a re-export of the same shapes has the same sizes), and a sample misses a merged LoRA
update that moves a bf16 weight by less than half an ulp in most elements. Hashing reads every weight byte once,
which load_pretrained does anyway right after (the hash leaves them in the page cache): about 1.4 GB/s on this
2-core CPU, 0.4 s for Gemma-3-270M, 20 s for a 14B bf16 model, against minutes of loading and compiling and
hours of sampling.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import pathlib

CONFIG = "eval_config.json"
# The settings every sample of a resumed set must share: the model, the sampling distribution and the numerics.
# Left out on purpose: --batch-size and --mesh (how rows are laid out, not what is sampled; lowering the batch
# after running out of memory must be able to resume), --sets and --limit (a set's file only gains items), the
# data directory (each record is checked against its item instead).
MUST_MATCH = ("model_fingerprint", "n", "temperature", "top_p", "top_k", "max_new_tokens", "seed", "dtype")
# Files of a checkpoint directory that the loaders read: weights, config, generation config, tokenizer, template.
MODEL_SUFFIXES = (".safetensors", ".gguf", ".json", ".model", ".txt", ".jinja", ".tiktoken")
OUTPUT_PATTERNS = ("*.jsonl", "*.scores.json", "*.png", "summary.json", CONFIG)


class ResumeRefused(ValueError):
    """The output directory holds generations that another evaluation wrote; the message names what differs."""


def model_files(model: str | pathlib.Path) -> dict[str, str]:
    """{file name: SHA-256 hex} of what defines the model: a .gguf file itself, or the top-level files of a
    checkpoint directory with one of MODEL_SUFFIXES (README, licences and subfolders are left out).

    Raises FileNotFoundError when the path does not exist or the directory holds no such file."""
    path = pathlib.Path(model)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"--model {path} holds no checkpoint files ({', '.join(MODEL_SUFFIXES)})")
    else:
        raise FileNotFoundError(f"--model {path} does not exist")
    out = {}
    for file in files:
        with open(file, "rb") as f:
            out[file.name] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def fingerprint(files: dict[str, str]) -> str:
    """One SHA-256 hex over every file's name and hash (independent of where the files live)."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def default_out(model: str | pathlib.Path, model_fingerprint: str) -> pathlib.Path:
    """runs/eval/<parent>-<name>-<8 hex of the fingerprint>: a run directory's export `.../sft/hf` becomes
    runs/eval/sft-hf-1a2b3c4d, so two exports (both named hf) or two versions of one path never share a directory."""
    path = pathlib.Path(model).resolve()
    parts = [p for p in (path.parent.name, path.stem) if p]
    return pathlib.Path("runs/eval") / "-".join([*parts, model_fingerprint[:8]])


def prompt_hash(prompt: str) -> str:
    """What a record stores of its prompt (template and instruction included): 16 hex of its SHA-256."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def _differences(saved: dict, now: dict) -> list[str]:
    diffs = []
    for key in MUST_MATCH:
        if saved.get(key) != now.get(key):
            if key == "model_fingerprint":
                old, new = saved.get("model_files") or {}, now.get("model_files") or {}
                changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
                diffs.append(f"model ({saved.get('model')} with fingerprint {str(saved.get(key))[:12]} then, "
                             f"{now.get('model')} with {str(now.get(key))[:12]} now; files that differ: "
                             f"{', '.join(changed) or 'none listed'})")
            else:
                diffs.append(f"{key} ({saved.get(key)!r} then, {now.get(key)!r} now)")
    return diffs


def has_generations(out: pathlib.Path) -> bool:
    return any(p.stat().st_size for p in out.glob("*.jsonl"))


def check_resume(out: pathlib.Path, config: dict, fresh: bool = False) -> pathlib.Path | None:
    """Decide, before anything is written, whether an evaluation with `config` may continue `out`.

    With `fresh`, any previous generations move to out/superseded/<UTC time>/ (returned), whatever their
    settings, so the sets start afresh and nothing is lost. Otherwise: nothing there, or generations written with
    the same MUST_MATCH values: None (resume); else ResumeRefused naming each setting that differs, with every
    file left as it is. Generations without an eval_config.json (or one without a fingerprint) cannot be attributed
    and count as different."""
    if not out.is_dir() or not has_generations(out):
        return None
    if fresh:                          # asked to start over: same settings or not
        return move_aside(out)
    path = out / CONFIG
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        saved = {}
    diffs = _differences(saved, config) if saved.get("model_fingerprint") else [
        f"unknown origin ({path} is missing or records no model fingerprint)"]
    if not diffs:
        return None
    raise ResumeRefused(f"{out} holds generations of another evaluation: {'; '.join(diffs)}. They are left as "
                        f"they are. Rerun with those settings to resume them, choose another --out, or pass "
                        f"--fresh to move them to {out / 'superseded'} and start over")


def move_aside(out: pathlib.Path) -> pathlib.Path:
    """Move every output file of a previous evaluation into out/superseded/<UTC time>/; returns that folder."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = out / "superseded" / stamp
    dest.mkdir(parents=True)
    for pattern in OUTPUT_PATTERNS:
        for file in out.glob(pattern):
            if file.is_file():
                file.replace(dest / file.name)
    return dest


def check_records(path: pathlib.Path, records: dict[str, dict], items: list, prompts: dict[str, str],
                  n: int) -> None:
    """Raise ResumeRefused when a record of `path` that an item of this run would reuse differs from it: another
    problem or answer (another data file with the same ids), another prompt (chat template or instruction), or
    another number of samples than n. Records of ids this run does not evaluate are left alone."""
    bad = {}
    for item in items:
        record = records.get(item.id)
        if record is None:
            continue
        checks = (("problem", record.get("problem") == item.problem), ("answer", record.get("answer") == item.answer),
                  ("prompt", record.get("prompt_sha256") == prompt_hash(prompts[item.id])),
                  ("n", len(record.get("all_generated_answers", ())) == n))
        for what, ok in checks:
            if not ok:
                bad.setdefault(what, []).append(item.id)
    if bad:
        what = "; ".join(f"{k} differs for {len(v)} item(s), first {v[0]!r}" for k, v in bad.items())
        raise ResumeRefused(f"{path} was written for other items or settings ({what}); it is left as it is. Choose "
                            f"another --out, or pass --fresh to move it aside and start over")
