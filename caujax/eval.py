"""python -m caujax.eval: test suites -> generations JSONL -> scores, table and plot.

Defaults reproduce the CauGym protocol (DATA.md 1.7): chat template, one user turn, no system prompt,
temperature 0.6, top_p 0.95, 8192 new tokens, 5 samples, the insufficient set's own instruction.

    python -m caujax.eval --model /path/to/checkpoint --suite caugym --sets base,insufficient --n 5
    python -m caujax.eval --model model.gguf --suite calm --limit 20 --max-new-tokens 512
    python -m caujax.eval --model DIR --suite generated.json        # any file in the CauGym item format

Resumable: generations are appended per batch, and a rerun with the same --out skips every finished item.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

from tqdm import tqdm

from caujax.data import load_calm, load_caugym, load_file
from caujax.data.caugym import TEST_SETS
from caujax.data.items import Item
from caujax.data.prompts import item_prompt
from caujax.eval_report import format_scores, plot_scores, read_generations, set_scores


def suite_items(suite: str, sets: list[str] | None, data_dir: str | None, calm_dir: str | None) -> dict[str, list[Item]]:
    """name -> items. Rows whose rewrite failed are dropped, as the paper's table does."""
    if suite == "caugym":
        names = sets or list(TEST_SETS)
        unknown = sorted(set(names) - set(TEST_SETS))
        if unknown:
            raise SystemExit(f"unknown CauGym set(s) {unknown}; choose from {', '.join(TEST_SETS)}")
        return {name: load_caugym(name, data_dir) for name in names}
    if suite == "calm":
        kinds = sets or ["basic", "natural"]
        return {f"calm_{kind}": load_calm(kind, calm_dir) for kind in kinds}
    path = pathlib.Path(suite)
    if path.is_file():
        return {path.stem: load_file(path, set_name=path.stem)}
    raise SystemExit(f"--suite {suite!r} is neither 'caugym', 'calm' nor a JSON file of items")


def generate_set(model, tokenizer, name: str, items: list[Item], out_path: pathlib.Path, params, batch_size: int,
                 mesh=None) -> dict[str, dict]:
    """Sample every unfinished item of a set, appending one JSONL line per item; returns all generations."""
    from caujax.sampling import sample

    done = read_generations(out_path)
    todo = [it for it in items if it.id not in done]
    prompts = {it.id: item_prompt(tokenizer, it) for it in todo}
    todo.sort(key=lambda it: len(prompts[it.id]))        # similar lengths share a length bucket: less padding
    tokens = 0
    start = time.perf_counter()
    with tqdm(total=len(items), initial=len(items) - len(todo), desc=name, unit="item") as bar, \
            open(out_path, "a", encoding="utf-8") as f:
        for i in range(0, len(todo), batch_size):
            batch = todo[i: i + batch_size]
            result = sample(model, tokenizer, [prompts[it.id] for it in batch], params, mesh=mesh)
            for item, texts, ids in zip(batch, result.texts, result.tokens):
                record = {"id": item.id, "set": name, "Type": item.type, "problem": item.problem,
                          "answer": item.answer, "all_generated_answers": [t.strip() for t in texts],
                          "num_tokens": [len(s) for s in ids]}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                tokens += sum(record["num_tokens"])
            f.flush()
            os.fsync(f.fileno())                         # a kill after this line loses nothing finished
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
    return read_generations(out_path)


def main(argv=None) -> dict[str, dict]:
    ap = argparse.ArgumentParser(prog="python -m caujax.eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face checkpoint directory or .gguf file")
    ap.add_argument("--suite", default="caugym", help="caugym, calm, or a JSON file of items")
    ap.add_argument("--sets", default=None, help="comma-separated subset, e.g. base,insufficient (calm: basic,natural)")
    ap.add_argument("--data-dir", default=None, help="CauGym directory (default $CAUGYM_DIR)")
    ap.add_argument("--calm-dir", default=None, help="CaLM directory (default $CALM_DIR)")
    ap.add_argument("--out", default=None, help="output directory (default runs/eval/<model name>)")
    ap.add_argument("--n", type=int, default=5, help="samples per item (paper: 5)")
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8, help="prompts per sampler call (each with n samples)")
    ap.add_argument("--limit", type=int, default=None, help="only the first K items of each set")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
    ap.add_argument("--mesh", default=None, help="data,fsdp,tensor sizes, e.g. 1,-1,1 (default: one device)")
    args = ap.parse_args(argv)

    from caujax.models import load_pretrained
    from caujax.sampling import SamplingParams
    from caujax.sampling.sampler import compilations
    from caujax.sharding import make_mesh

    params = SamplingParams(n=args.n, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                            max_new_tokens=args.max_new_tokens, seed=args.seed)
    sets = suite_items(args.suite, args.sets.split(",") if args.sets else None, args.data_dir, args.calm_dir)
    mesh = make_mesh(*(int(x) for x in args.mesh.split(","))) if args.mesh else None
    model, tokenizer = load_pretrained(args.model, dtype=args.dtype, mesh=mesh)
    out = pathlib.Path(args.out or pathlib.Path("runs/eval") / pathlib.Path(args.model).stem)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_config.json").write_text(json.dumps(vars(args), indent=2))

    compiles_before = compilations()
    report = {}
    for name, items in sets.items():
        items = items[: args.limit] if args.limit else items
        generations = generate_set(model, tokenizer, name, items, out / f"{name}.jsonl", params, args.batch_size, mesh)
        rows = set_scores(items, {it.id: generations[it.id] for it in items})
        report[name] = rows
        title = f"{name}: {len(items)} items x {args.n} samples, accuracy (%)"
        print("\n" + format_scores(title, rows))
        (out / f"{name}.scores.json").write_text(json.dumps(rows, indent=2))
        plot_scores(title, rows, out / f"{name}.png")
    compiles = compilations() - compiles_before
    print(f"\nsampler compilations: {compiles}; outputs in {out}")
    (out / "summary.json").write_text(json.dumps({"scores": report, "sampler_compilations": compiles}, indent=2))
    return report


if __name__ == "__main__":
    main()
