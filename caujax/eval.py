"""python -m caujax.eval: test suites -> generations JSONL -> scores, table and plot.

Defaults reproduce the CauGym protocol (its eval/sample_generate.py and sample_evaluate.py): the model's chat
template over one user turn, no system prompt, temperature 0.6, top_p 0.95, 8192 new tokens, 5 samples per item,
the insufficient set's own instruction. Every sample is scored by the paper's rule and by the strict rule
(caujax/scoring.py), beside the always-0, always-LACK_CONDITION and solver baselines.

    python -m caujax.eval --model /path/to/checkpoint --suite caugym --sets base,insufficient --n 5
    python -m caujax.eval --model model.gguf --suite calm --limit 21 --max-new-tokens 512
    python -m caujax.eval --model DIR --suite generated.json        # any file in the CauGym item format
    python -m caujax.eval --model DIR --suite cladder --limit 200   # CLadder, its official prompt and scorer
    python -m caujax.eval --model DIR --suite causalprobe --sets E,H,M

The existing benchmarks (caujax/external_eval.py) use each one's official prompt under the chat template and
score every sample by the official rule and by a rule that reads the final answer after a chain of thought
(caujax/external_scoring.py), per rung, query type and story class (CLadder) or per subset (CausalProbe), beside
always-yes / majority-class / uniform-guess baselines and, for CLadder, the symbolic solver.

Data: --data-dir, else $CAUGYM_DIR, else shared/caugym beside the repository or the current directory, else
data/cache/caugym (where `python -m caujax.data download` writes); CaLM likewise with --calm-dir / $CALM_DIR;
CLadder and CausalProbe with --data-dir, $CLADDER_DIR / $CAUSALPROBE_DIR, shared/external/<name> or
data/cache/<name>. eval_config.json records the directory used.

Output (--out, default runs/eval/<parent>-<name>-<8 hex of the model's SHA-256>, e.g. runs/eval/sft-hf-1a2b3c4d):
<set>.jsonl (one line per item), <set>.scores.json, <set>.png, summary.json, eval_config.json.

Resumable: generations are appended per batch, and a rerun with the same --out skips every finished item, but
only when the model's files (SHA-256) and --n, --temperature, --top-p, --top-k, --max-new-tokens, --seed and
--dtype match the run that wrote them (caujax/eval_resume.py). Otherwise it refuses, names what differs and leaves
the files as they are; --fresh moves them to <out>/superseded/ and starts over. --batch-size, --mesh and --attention
may change between calls (they lay out or compute the same samples: equal replies in tests/test_eval.py);
eval_config.json keeps the last call's.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import sys
import time

from tqdm import tqdm

import caujax
from caujax import external_eval, scoring
from caujax.causal.answer import TYPES
from caujax.config import check_choice
from caujax.data import load_calm, load_caugym, load_file
from caujax.data.calm import KINDS as CALM_KINDS
from caujax.data.caugym import TEST_SETS
from caujax.data.items import Item, data_root
from caujax.data.prompts import item_prompt
from caujax.eval_report import format_scores, plot_scores, read_generations, scan_generations, set_scores
from caujax.eval_resume import (MUST_MATCH, ResumeRefused, check_records, check_resume, default_out, fingerprint,
                                model_files, prompt_hash)
from caujax.models.config import IMPLS


def suite_items(suite: str, sets: list[str] | None, data_dir: str | None, calm_dir: str | None
                ) -> tuple[dict[str, list[Item]], pathlib.Path]:
    """(name -> items, the data directory or file read, absolute). Rows whose rewrite failed are dropped, as the
    paper's table does. Raises FileNotFoundError (data_root: where it looked) and ValueError for an unknown set.
    The existing benchmarks (cladder, causalprobe) are read by external_eval.suite_items."""
    if suite in external_eval.SUITES:
        return external_eval.suite_items(suite, sets, data_dir)
    if suite == "caugym":
        names = sets or list(TEST_SETS)
        unknown = sorted(set(names) - set(TEST_SETS))
        if unknown:
            raise ValueError(f"unknown CauGym set(s) {unknown}; choose from {', '.join(TEST_SETS)}")
        root = data_root(data_dir, "CAUGYM_DIR", "CauGym")
        return {name: load_caugym(name, root) for name in names}, root
    if suite == "calm":
        kinds = sets or list(CALM_KINDS)
        unknown = sorted(set(kinds) - set(CALM_KINDS))
        if unknown:
            raise ValueError(f"unknown CaLM kind(s) {unknown}; choose from {', '.join(CALM_KINDS)}")
        root = data_root(calm_dir, "CALM_DIR", "CaLM")
        return {f"calm_{kind}": load_calm(kind, root) for kind in kinds}, root
    path = pathlib.Path(suite)
    if path.is_file():
        return {path.stem: load_file(path, set_name=path.stem)}, path.resolve()
    raise ValueError(f"--suite {suite!r} is neither caugym, calm, cladder, causalprobe nor an existing JSON file "
                     f"of items")


def spread_over_types(items: list[Item], k: int) -> list[Item]:
    """k items taken round-robin over the task types (TYPES order, then others by name), returned in file order.
    Within a type the items come in van der Corput order over their positions (the first, the middle, the quarters,
    ...), so any k is spread over the whole file, not its start (CLadder and the CauGym files list items in blocks
    of a type, a story class or a difficulty), and a larger k keeps every item of a smaller one (resuming with a
    larger --limit adds items)."""
    by_type: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_type.setdefault(item.type, []).append(i)
    by_type = {t: [rows[j] for j in spread_order(len(rows))] for t, rows in by_type.items()}
    order = sorted(by_type, key=lambda t: (TYPES.index(t) if t in TYPES else len(TYPES), t))
    picked: list[int] = []
    for rank in range(max(map(len, by_type.values()), default=0)):
        picked += [by_type[t][rank] for t in order if rank < len(by_type[t])]
    return [items[i] for i in sorted(picked[:k])]


def spread_order(n: int) -> list[int]:
    """0..n-1 in van der Corput (base 2) order scaled to n: 0, n/2, n/4, 3n/4, ... (each position once)."""
    out, seen, r = [], set(), 0
    while len(out) < n:
        x, v, scale = r, 0.0, 0.5
        while x:
            v, x, scale = v + scale * (x & 1), x >> 1, scale / 2
        if (pos := int(v * n)) not in seen:
            seen.add(pos)
            out.append(pos)
        r += 1
    return out


def generate_set(model, tokenizer, name: str, items: list[Item], out_path: pathlib.Path, params, batch_size: int,
                 mesh=None, prompt_of=item_prompt) -> dict[str, dict]:
    """Sample every unfinished item of a set, appending one JSONL line per item; returns all generations.

    A record holds the replies, their token counts, whether each was truncated at max_new_tokens, its prompt's
    hash and whether the prompt opened <think> (scoring.prompt_opens_thinking: the strict rule then needs the
    reply's `</think>`). Raises eval_resume.ResumeRefused, before the file is touched, when a finished record does
    not fit its item (eval_resume.check_records). prompt_of(tokenizer, item) builds each prompt (default: CauGym's;
    external_eval.item_prompt for the existing benchmarks)."""
    from caujax.sampling import sample
    from caujax.sampling.sampler import bucket, prompt_ids

    prompts = {it.id: prompt_of(tokenizer, it) for it in items}
    records, _ = scan_generations(out_path)
    check_records(out_path, records, items, prompts, params.n)
    done = read_generations(out_path)               # the same records; drops a torn last line from the file
    todo = [it for it in items if it.id not in done]
    opened = {it.id: scoring.prompt_opens_thinking(prompts[it.id]) for it in todo}
    if any(opened.values()):
        scoring.check_tags_survive_decoding(tokenizer)
    # Sorted by token count and batched within the sampler's prompt-length buckets: one long prompt would
    # otherwise widen its whole batch (a 375-token prompt put 100 rows of ~220 tokens into 512 columns).
    n_tokens = {it.id: len(prompt_ids(tokenizer, prompts[it.id])) for it in todo}
    todo.sort(key=lambda it: n_tokens[it.id])
    tokens = 0
    start = time.perf_counter()
    with tqdm(total=len(items), initial=len(items) - len(todo), desc=name, unit="item") as bar, \
            open(out_path, "a", encoding="utf-8") as f:
        for batch in balanced_batches(todo, batch_size, width=lambda it: bucket(n_tokens[it.id])):
            result = sample(model, tokenizer, [prompts[it.id] for it in batch], params, mesh=mesh)
            for item, texts, ids, ended in zip(batch, result.texts, result.tokens, result.done):
                record = {"id": item.id, "set": name, "Type": item.type, "problem": item.problem,
                          "answer": item.answer, "all_generated_answers": [t.strip() for t in texts],
                          "num_tokens": [len(s) for s in ids], "truncated": [not e for e in ended],
                          "prompt_sha256": prompt_hash(prompts[item.id]),
                          "prompt_opened_thinking": opened[item.id]}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                tokens += sum(record["num_tokens"])
            f.flush()
            os.fsync(f.fileno())                         # a kill after this line loses nothing finished
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
    return read_generations(out_path)


def balanced_batches(items: list, most: int, width=None) -> list[list]:
    """`items` cut in order into the fewest batches of at most `most`, their sizes within one of each other: 130
    items at most 64 make 43, 43, 44 rather than 64, 64, 2, so a set's batches share one compiled shape
    (sampler.bucket_rows) and no batch is mostly bucket filler. With `width(item)` (the sampler's prompt-length
    bucket; items sorted by it), a batch never mixes two widths: each run of equal width is cut on its own."""
    runs = [items] if width is None else [list(run) for _, run in itertools.groupby(items, key=width)]
    batches = []
    for run in runs:
        k = -(-len(run) // most)
        bounds = [i * len(run) // k for i in range(k + 1)] if k else []
        batches += [run[a:b] for a, b in zip(bounds, bounds[1:])]
    return batches


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m caujax.eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face checkpoint directory or .gguf file")
    ap.add_argument("--suite", default="caugym", metavar="{caugym,calm,cladder,causalprobe,FILE.json}",
                    help="caugym (its six test sets), calm (CaLM-Lite), cladder, causalprobe, or a JSON file of "
                         "items in the CauGym format (default caugym)")
    ap.add_argument("--sets", default=None, metavar="A,B",
                    help=f"comma-separated subset; caugym: {', '.join(TEST_SETS)} (default all); calm: "
                         f"{', '.join(CALM_KINDS)} (default both); causalprobe: E, H, M (default E,H); cladder: one "
                         f"set, cladder")
    ap.add_argument("--data-dir", default=None,
                    help="CauGym directory, or the CLadder file or directory, or the CausalProbe directory, for the "
                         "chosen suite (default: see Data above)")
    ap.add_argument("--calm-dir", default=None, help="CaLM directory (default: see Data above)")
    ap.add_argument("--out", default=None, help="output directory (default: see Output above)")
    ap.add_argument("--fresh", action="store_true",
                    help="move generations of another evaluation in --out to <out>/superseded/ and start over")
    ap.add_argument("--n", type=int, default=5, help="samples per item (paper: 5)")
    ap.add_argument("--temperature", type=float, default=0.6, help="0 is greedy (paper: 0.6)")
    ap.add_argument("--top-p", type=float, default=0.95, help="nucleus mass in (0, 1] (paper: 0.95)")
    ap.add_argument("--top-k", type=int, default=0, help="0 turns top-k off")
    ap.add_argument("--max-new-tokens", type=int, default=8192, help="paper: 8192")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8, help="prompts per sampler call (each with n samples)")
    ap.add_argument("--limit", type=int, default=None, metavar="K",
                    help="K items of each set, spread round-robin over its task types (default: all)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="parameters and compute (default float32)")
    ap.add_argument("--mesh", default=None, metavar="DATA,FSDP,TENSOR",
                    help="mesh axis sizes, e.g. 1,-1,1 (default: one device)")
    ap.add_argument("--attention", default="auto", type=_attention, metavar="{" + ",".join(IMPLS) + "}",
                    help="attention kernel, as train's --model.attention (README: speed settings). auto "
                         "(default) and blockwise: blockwise prefill; splash: the TPU kernel's prefill; these three "
                         "decode over the filled cache columns only; plain and dot_product read every allocated "
                         "cache slot at every decoded token")
    return ap


def _attention(text: str) -> str:
    try:
        return check_choice(None, text, IMPLS)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class UsageError(SystemExit):
    """Exit status 2 (argparse's for a usage error) whose str() is the message, already printed on stderr."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def refuse(message) -> UsageError:
    print(f"python -m caujax.eval: error: {message}", file=sys.stderr, flush=True)
    return UsageError(str(message))


def main(argv=None) -> dict[str, dict]:
    """python -m caujax.eval: a user error (a bad checkpoint, data file, mesh, output path or record) is one line on
    stderr and exit status 2, as in the other CLIs (a bad option: argparse's usage, then one line); other exceptions
    keep their traceback."""
    try:
        return _main(argv)
    except (ValueError, OSError) as e:          # CheckpointError and ResumeRefused are ValueErrors
        raise refuse(e) from None


# Options checked before anything is loaded or written: (name, test, what it must be).
LIMITS = (("n", lambda v: v >= 1, ">= 1"), ("batch_size", lambda v: v >= 1, ">= 1"),
          ("max_new_tokens", lambda v: v >= 1, ">= 1"), ("temperature", lambda v: v >= 0, ">= 0 (0 is greedy)"),
          ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"), ("top_k", lambda v: v >= 0, ">= 0 (0 is off)"),
          ("limit", lambda v: v is None or v >= 1, ">= 1"))


def _main(argv=None) -> dict[str, dict]:
    ap = _parser()
    args = ap.parse_args(argv)
    for name, ok, must in LIMITS:
        if not ok(getattr(args, name)):
            ap.error(f"--{name.replace('_', '-')} must be {must}, got {getattr(args, name)}")

    from caujax.sampling import SamplingParams

    try:
        params = SamplingParams(n=args.n, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                max_new_tokens=args.max_new_tokens, seed=args.seed)
        sets, data_path = suite_items(args.suite, args.sets.split(",") if args.sets else None, args.data_dir,
                                      args.calm_dir)
        files = model_files(args.model)
    except (ValueError, FileNotFoundError) as e:
        raise refuse(e) from None
    model_fingerprint = fingerprint(files)
    out = pathlib.Path(args.out) if args.out else default_out(args.model, model_fingerprint)
    config = {"model": str(pathlib.Path(args.model).resolve()), "model_fingerprint": model_fingerprint,
              "n": args.n, "temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
              "max_new_tokens": args.max_new_tokens, "seed": args.seed, "dtype": args.dtype,
              "suite": args.suite, "sets": list(sets), "data_dir": str(data_path), "limit": args.limit,
              "batch_size": args.batch_size, "mesh": args.mesh, "attention": args.attention, "model_files": files}
    assert set(MUST_MATCH) <= set(config)
    try:            # before loading the model (minutes) and before writing anything
        moved = check_resume(out, config, fresh=args.fresh)
    except ResumeRefused as e:
        raise refuse(e) from None
    if moved:
        print(f"moved the previous evaluation's files to {moved}")

    from caujax.models import load_pretrained
    from caujax.models.load import with_run_settings
    from caujax.sampling.sampler import compilations
    from caujax.sharding import make_mesh

    mesh = make_mesh(*(int(x) for x in args.mesh.split(","))) if args.mesh else None
    model, tokenizer = load_pretrained(args.model, dtype=args.dtype, mesh=mesh)
    if args.attention != model.cfg.attention:
        model = with_run_settings(model, attention=args.attention)
    whole = sets
    sets = {name: spread_over_types(items, args.limit) if args.limit else items for name, items in sets.items()}
    external = args.suite in external_eval.SUITES
    prompt_of = external_eval.item_prompt if external else item_prompt
    try:            # every set's records against its items, before any file is written (generate_set checks again)
        for name, items in sets.items():
            path = out / f"{name}.jsonl"
            check_records(path, scan_generations(path)[0], items, {it.id: prompt_of(tokenizer, it) for it in items},
                          args.n)
    except ResumeRefused as e:
        raise refuse(e) from None
    out.mkdir(parents=True, exist_ok=True)
    # Which file each set came from, kept across suites evaluated into one directory (the rest is the last call's).
    earlier = out / "eval_config.json"
    earlier = json.loads(earlier.read_text()).get("data_by_set", {}) if earlier.is_file() else {}
    config["data_by_set"] = {**earlier, **{name: str(data_path) for name in sets}}
    (out / "eval_config.json").write_text(json.dumps(config, indent=2))

    compiles_before = compilations()
    report, truncated = {}, {}
    for name, items in sets.items():
        generations = generate_set(model, tokenizer, name, items, out / f"{name}.jsonl", params, args.batch_size, mesh,
                                   prompt_of)
        title = f"{name}: {len(items)} items x {args.n} samples, accuracy (%)"
        if external:
            rows = external_eval.set_scores(items, {it.id: generations[it.id] for it in items}, whole[name])
            for suffix, columns in external_eval.table_sections(items):
                print("\n" + format_scores(title + suffix, rows, columns))
        else:
            rows = set_scores(items, {it.id: generations[it.id] for it in items})
            print("\n" + format_scores(title, rows))
        report[name] = rows
        cut = [t for it in items for t in generations[it.id].get("truncated", ())]
        truncated[name] = sum(cut)
        print(f"{sum(cut)} of {len(cut)} samples stopped at --max-new-tokens={args.max_new_tokens}"
              + (f" (a reply still thinking there has no final answer under the "
                 f"{'final-answer' if external else 'strict'} rule)" if sum(cut) else ""))
        (out / f"{name}.scores.json").write_text(json.dumps(rows, indent=2))
        plot_scores(title, rows, out / f"{name}.png", **(external_eval.plot_options(items, rows) if external else {}))
    compiles = compilations() - compiles_before
    print(f"\nsampler compilations: {compiles}; outputs in {out}")
    # One summary per output directory: the sets of another suite evaluated into it before keep their entries.
    summary = out / "summary.json"
    earlier = json.loads(summary.read_text()) if summary.is_file() else {}
    summary.write_text(json.dumps({"scores": {**earlier.get("scores", {}), **report},
                                   "truncated_samples": {**earlier.get("truncated_samples", {}), **truncated},
                                   "sampler_compilations": compiles}, indent=2))
    return report


if __name__ == "__main__":
    caujax.plain_warnings()
    main()
