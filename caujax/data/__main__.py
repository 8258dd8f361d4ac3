"""python -m caujax.data {download,generate,convert,baselines}: fetch, make, convert and sanity-score the data.

Bad options are refused by argparse (usage and the choices, exit status 2); a missing data directory or file, or
a bad row, ends in one line `python -m caujax.data <command>: error: <message>` and exit status 2, no traceback.
"""
import argparse
import dataclasses
import json
import pathlib
import sys

from tqdm import tqdm

import caujax
from caujax.causal.answer import TYPES
from caujax.causal.generate import LAYOUTS, REASONS, STYLES

# What a user can cause and fix: a data directory or file that is not there or cannot be read (OSError, with
# FileNotFoundError), a set name or a row that is wrong (ValueError, with RowError). Anything else is a bug in
# caujax and keeps its traceback.
USER_ERRORS = (OSError, ValueError)


def _download(args):
    from caujax.data.download import SOURCES, download

    sources = tuple(s.strip() for s in args.only.split(",") if s.strip())
    bad = sorted(set(sources) - set(SOURCES))
    if bad or not sources:
        raise ValueError(f"--only {args.only!r}: expected a comma-separated subset of {','.join(SOURCES)}")
    download(args.dest, ref=args.ref, force=args.force, sources=sources)


CAUGYM_ONLY = ("tasks", "style", "layout", "nodes", "noncause", "precision", "reason")   # generate's options


def _generate(args):
    out = pathlib.Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give the JSON file to write, e.g. {out / 'problems.json'}")
    # An option of the other format would be ignored without a word: refused instead.
    as_given = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v       # noqa: E731
    if args.format == "cladder":
        given = [f"--{k}" for k in CAUGYM_ONLY if as_given(getattr(args, k)) != as_given(args.caugym_defaults[k])]
        if given:
            raise ValueError(f"{', '.join(given)} shape(s) CauGym-format problems; --format cladder takes only --n, "
                             f"--seed, --query-types and --out")
    elif args.query_types is not None:
        raise ValueError("--query-types is for --format cladder; CauGym-format problems take --tasks")
    if args.format == "cladder":
        from caujax.causal.cladder_generate import ALL_QUERY_TYPES, generate_cladder

        kinds = tuple(k.strip() for k in (args.query_types or ",".join(ALL_QUERY_TYPES)).split(",") if k.strip())
        bad = sorted(set(kinds) - set(ALL_QUERY_TYPES))
        if bad or not kinds:
            raise ValueError(f"--query-types {args.query_types!r}: expected a comma-separated subset of "
                             f"{','.join(ALL_QUERY_TYPES)}")
        items = generate_cladder(args.n, args.seed, query_types=kinds)
    else:
        from caujax.causal.generate import generate

        items = generate(args.n, args.seed, tasks=args.tasks, style=args.style, layout=args.layout,
                         nodes=tuple(args.nodes), noncause=args.noncause, precision=args.precision,
                         reason=args.reason)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {len(items)} problems to {out}")


def _load(name: str, args):
    """A CauGym set, calm_basic / calm_natural, or a path to a CauGym-format JSON / JSON-lines / parquet file (e.g.
    from generate)."""
    from caujax.data import calm, caugym

    if name.endswith((".json", ".jsonl", ".parquet")):
        return caugym.load_file(name)
    if name in ("calm_basic", "calm_natural"):
        return calm.load_calm(name.removeprefix("calm_"), args.calm_dir)
    return caugym.load_caugym(name, args.caugym_dir, drop_failed=not args.keep_failed, calm_dir=args.calm_dir)


def _convert_cladder(args) -> None:
    """A CLadder file (either layout) to SFT rows; items without worked reasoning are skipped and counted."""
    from caujax.data import cladder

    if args.to != "sft":
        raise ValueError(f"{args.set} is a CLadder file: it converts to sft rows only (its answers are yes/no "
                         f"without the JSON the rl reward and the dpo/kto wrong solutions need)")
    items = cladder.load_cladder(args.set)
    rows = []
    for item in items:
        try:
            rows.append(cladder.sft_row(item))
        except ValueError:
            pass
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} sft rows from {len(items)} CLadder items to {out} "
          f"({len(items) - len(rows)} without worked reasoning skipped)")


def _convert(args):
    from caujax.data import cladder, examples, prompts

    if args.set.endswith((".json", ".jsonl")) and cladder.looks_like_cladder(args.set):
        return _convert_cladder(args)
    items = _load(args.set, args)
    if args.to == "sft":
        rows = [dataclasses.asdict(e) for e in examples.sft_examples(tqdm(items, desc="render"), args.seed)]
    elif args.to in ("dpo", "kto"):
        make = examples.dpo_examples if args.to == "dpo" else examples.kto_examples
        rows = [dataclasses.asdict(r) for r in make(tqdm(items, desc="pairs"), args.seed)]
    else:      # rl: prompts with their ground truth, for GRPO/PPO
        rows = [{"id": it.id, "prompt": prompts.user_message(it.problem, prompts.instruction_for(it)),
                 "answer": it.answer, "type": it.type} for it in items]
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} {args.to} rows from {len(items)} items to {out}")


def _baselines(args):
    """A table per set, or with --json one object keyed by set (other tools read it). A CLadder file (either
    layout) gets its own baselines: always-yes, the majority class and the CLadder solver."""
    from caujax.data import baselines, cladder

    names = [n for n in baselines.BASELINES if n != "solver" or not args.no_solver]
    report = {}
    for name in args.sets.split(","):
        if name.endswith((".json", ".jsonl")) and cladder.looks_like_cladder(name):
            from caujax.external_eval import baseline_summary

            report[name] = summary = baseline_summary(cladder.load_cladder(name))
            if not args.json:
                print(f"\n{name} ({summary['n']} items, CLadder)\n" + "\n".join(
                    f"{key:<16} {100 * value:6.1f}%" for key, value in summary.items()
                    if key not in ("n", "majority_label")) + f"\nmajority label   {summary['majority_label']}",
                      flush=True)
            continue
        items = _load(name, args)
        if args.json:
            report[name] = baselines.summary(items, names)
            continue
        table = baselines.baseline_table(items, names, progress=True)
        print(baselines.format_table(f"\n{name} ({len(items)} items)", table), flush=True)
    if args.json:
        print(json.dumps(report, indent=1))


def _task_list(text: str) -> tuple[str, ...]:
    """argparse type of --tasks: a comma-separated, non-empty subset of TYPES (ArgumentTypeError names the rest)."""
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in tasks if t not in TYPES]
    if bad or not tasks:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated subset of {','.join(TYPES)}"
                                         + (f" ({', '.join(bad)} not among them)" if bad else ""))
    return tasks


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def main(argv=None) -> int:
    """Run one subcommand; 0 on success, 2 on a user error (one line on stderr) or a bad option (argparse)."""
    from caujax.data.caugym import TEST_SETS

    set_help = (f"{', '.join(TEST_SETS)}, rl, sft, calm_basic, calm_natural, a CauGym-format .json/.jsonl/.parquet "
                "file (e.g. from generate), or a CLadder .json/.jsonl file (either layout)")
    parser = argparse.ArgumentParser(prog="python -m caujax.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="fetch CauGym, CaLM-Lite, CLadder and CausalProbe files")
    p.add_argument("--dest", default="data/cache", help="writes DEST/<source> for each source")
    p.add_argument("--only", default="caugym,calm", metavar="S1,S2",
                   help="comma-separated subset of caugym,calm,cladder,causalprobe (default: caugym,calm; "
                        "CLadder comes from the Hugging Face hub, CausalProbe is for non-profit use only)")
    p.add_argument("--ref", default="HEAD", help="git branch, tag or commit of the repositories (HEAD: default "
                                                 "branch); for CLadder the hub revision")
    p.add_argument("--force", action="store_true", help="fetch files that already exist again")
    p.set_defaults(fn=_download)

    p = sub.add_parser("generate", help="write new problems with the causal engine (CauGym format, or CLadder "
                                        "yes/no questions with --format cladder)")
    p.add_argument("--n", type=_positive_int, required=True, help="number of problems")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", type=_task_list, default=TYPES, metavar="T1,T2,...",
                   help=f"comma-separated subset of {','.join(TYPES)} (default: all)")
    p.add_argument("--style", choices=(*STYLES, "mixed"), default="real",
                   help="node names: real-world words, letters, nonsense words, or mixed (default: %(default)s)")
    p.add_argument("--layout", choices=(*LAYOUTS, "mixed"), default="inline",
                   help="wording: inline (A=0) labels, CaLM basic, or mixed (default: %(default)s)")
    p.add_argument("--nodes", type=_positive_int, nargs=2, default=(4, 7), metavar=("MIN", "MAX"),
                   help="graph size range, 3-26 (default: 4 7)")
    p.add_argument("--noncause", type=float, default=1 / 3,
                   help="share of effect items whose treatment is not a cause (answer 0; default: 1/3)")
    p.add_argument("--precision", type=int, choices=(1, 2, 3, 4), default=None,
                   help="decimals of the SCM's probabilities (1: one-digit arithmetic; keep --nodes small); "
                        "default: any")
    p.add_argument("--reason", choices=REASONS, default="caugym",
                   help="worked solution: CauGym's 7 steps or the short form (default: %(default)s)")
    p.add_argument("--format", choices=("caugym", "cladder"), default="caugym",
                   help="caugym: CauGym-format problems (the options above); cladder: yes/no questions in the CLadder "
                        "v1.5 layout over its ten graphs and query types (default: %(default)s)")
    p.add_argument("--query-types", default=None, metavar="Q1,Q2",
                   help="with --format cladder: a subset of marginal,correlation,exp_away,ate,backadj,collider_bias,"
                        "ett,nde,nie,det-counterfactual (default: all)")
    p.add_argument("--out", required=True, help="the JSON file to write (not a directory)")
    p.set_defaults(fn=_generate, caugym_defaults={k: p.get_default(k) for k in CAUGYM_ONLY})

    data_args = argparse.ArgumentParser(add_help=False)
    places = "else shared/{0} beside the repository or beside the working directory, else data/cache/{0}"
    data_args.add_argument("--caugym-dir", default=None, help="default: $CAUGYM_DIR, " + places.format("caugym"))
    data_args.add_argument("--calm-dir", default=None, help="default: $CALM_DIR, " + places.format("calm"))
    data_args.add_argument("--keep-failed", action="store_true", help="keep rows whose rewriting failed")

    p = sub.add_parser("convert", parents=[data_args], help="items -> SFT / DPO / KTO / RL JSON lines")
    p.add_argument("--set", required=True, help=set_help)
    p.add_argument("--to", choices=("sft", "dpo", "kto", "rl"), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the JSON-lines file to write (e.g. a run's data.source)")
    p.set_defaults(fn=_convert)

    p = sub.add_parser("baselines", parents=[data_args],
                       help="trivial baselines and solver accuracy per set (CauGym-format: always-0 / always-LACK / "
                            "solver; CLadder: always-yes / majority / solver)")
    p.add_argument("--sets", default=",".join((*TEST_SETS, "calm_basic")), help="comma-separated; " + set_help)
    p.add_argument("--no-solver", action="store_true")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object keyed by set: n, solver_coverage, solver_accuracy (fractions, accuracy "
                        "over the answered items) and each baseline's accuracy; CLadder files (either layout) too")
    p.set_defaults(fn=_baselines)

    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except USER_ERRORS as e:
        # str(e) of an OSError raised by the OS itself reads "[Errno 2] No such file or directory: 'x'": clear enough.
        print(f"{parser.prog} {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    caujax.plain_warnings()
    sys.exit(main())
