"""python -m caujax.data {download,generate,convert,baselines}: fetch, make, convert and sanity-score the data."""
import argparse
import dataclasses
import json
import pathlib
import sys

from tqdm import tqdm


def _download(args):
    from caujax.data.download import download

    download(args.dest, ref=args.ref, force=args.force)


def _generate(args):
    from caujax.causal.generate import generate

    kwargs = {}
    if args.tasks:
        kwargs["tasks"] = tuple(args.tasks.split(","))
    for key in ("style", "layout"):
        if getattr(args, key):
            kwargs[key] = getattr(args, key)
    items = generate(args.n, args.seed, **kwargs)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {len(items)} problems to {out}")


def _load(name: str, args):
    """A CauGym set, calm_basic / calm_natural, or a path to a CauGym-format JSON file (e.g. from generate)."""
    from caujax.data import calm, caugym

    if name.endswith(".json"):
        return caugym.load_file(name)
    if name in ("calm_basic", "calm_natural"):
        return calm.load_calm(name.removeprefix("calm_"), args.calm_dir)
    return caugym.load_caugym(name, args.caugym_dir, drop_failed=not args.keep_failed, calm_dir=args.calm_dir)


def _convert(args):
    from caujax.data import examples, prompts

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
    from caujax.data import baselines

    names = [n for n in baselines.BASELINES if n != "solver" or not args.no_solver]
    for name in args.sets.split(","):
        items = _load(name, args)
        table = baselines.baseline_table(items, names, progress=True)
        print(baselines.format_table(f"\n{name} ({len(items)} items)", table), flush=True)


def main(argv=None):
    from caujax.data.caugym import TEST_SETS

    set_help = (f"{', '.join(TEST_SETS)}, rl, sft, calm_basic, calm_natural, or a CauGym-format .json file "
                "(e.g. from generate)")
    parser = argparse.ArgumentParser(prog="python -m caujax.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="fetch CauGym and CaLM-Lite files from GitHub")
    p.add_argument("--dest", default="data/cache", help="writes DEST/caugym and DEST/calm")
    p.add_argument("--ref", default="HEAD", help="git branch, tag or commit of both repositories")
    p.add_argument("--force", action="store_true", help="fetch files that already exist again")
    p.set_defaults(fn=_download)

    p = sub.add_parser("generate", help="write new problems (CauGym JSON format) with the causal engine")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default="", help="comma-separated subset of ATE,CDE,ETT,NDE,NIE,PN,PS")
    p.add_argument("--style", default="", help="node naming style (see caujax.causal.generate)")
    p.add_argument("--layout", default="", help="problem wording layout (see caujax.causal.generate)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_generate)

    data_args = argparse.ArgumentParser(add_help=False)
    data_args.add_argument("--caugym-dir", default=None, help="default: $CAUGYM_DIR")
    data_args.add_argument("--calm-dir", default=None, help="default: $CALM_DIR")
    data_args.add_argument("--keep-failed", action="store_true", help="keep rows whose rewriting failed")

    p = sub.add_parser("convert", parents=[data_args], help="items -> SFT / DPO / KTO / RL JSON lines")
    p.add_argument("--set", required=True, help=set_help)
    p.add_argument("--to", choices=("sft", "dpo", "kto", "rl"), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_convert)

    p = sub.add_parser("baselines", parents=[data_args], help="always-0 / always-LACK / solver accuracy tables")
    p.add_argument("--sets", default=",".join((*TEST_SETS, "calm_basic")), help="comma-separated; " + set_help)
    p.add_argument("--no-solver", action="store_true")
    p.set_defaults(fn=_baselines)

    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
