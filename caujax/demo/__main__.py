"""python -m caujax.demo [--config configs/demo_gemma3_270m.py] [--run_dir=...] [--fresh] [--until STAGE] [--a.b=c]

Runs the demo pipeline (caujax/demo/pipeline.py): generated train / held-out problems, the base model evaluated,
LoRA SFT, evaluated, LoRA GRPO, evaluated, and report.md with charts under run_dir. Rerunning continues an
interrupted demo from the stage (and checkpoint) it was in; --fresh starts over. Any DemoConfig field can be
overridden with a dotted flag, e.g. --sft.steps=40 --grpo.optim.lr=1e-5 --heldout_items=400.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

import caujax
from caujax.demo.pipeline import STAGES

REPO = pathlib.Path(__file__).resolve().parents[2]


def load(path: str, overrides: dict):
    from caujax.config import apply_overrides, load_preset
    from caujax.demo.config import DemoConfig

    return apply_overrides(load_preset(path, DemoConfig), overrides)


def main(argv=None) -> dict:
    from caujax.config import parse_overrides
    from caujax.demo.pipeline import Pipeline

    ap = argparse.ArgumentParser(prog="python -m caujax.demo", description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "demo_gemma3_270m.py"), help="a demo preset")
    ap.add_argument("--fresh", action="store_true", help="delete run_dir first and start over")
    ap.add_argument("--until", choices=STAGES, help="stop after this stage")
    args, rest = ap.parse_known_args(argv)
    cfg = load(args.config, parse_overrides(rest))
    if args.fresh and pathlib.Path(cfg.run_dir).exists():
        shutil.rmtree(cfg.run_dir)
    records = Pipeline(cfg).run(args.until)
    print(f"\nrun directory: {cfg.run_dir} (report.md, accuracy.png, curves.png, sft/, grpo/, grpo/hf)")
    return records


if __name__ == "__main__":
    caujax.plain_warnings()
    try:
        main()
    except (ValueError, FileNotFoundError) as err:      # bad input: the message says what; no traceback
        print(f"caujax.demo: error: {err}", file=sys.stderr)
        sys.exit(2)
