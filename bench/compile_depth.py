"""Compile time of the training step vs depth: scanned layers (one compiled block) vs the unrolled Python loop.

The step is train.py's own: `step.make_train_step` with the SFT objective of the method table and AdamW (forward,
backward, optimizer update, donated state), on one device, lowered from abstract shapes and compiled; nothing is
executed. Trace+lower and XLA compile are timed separately, on a 4-layer and a 48-layer model of the same small
width. Each measurement builds a fresh step, so no compilation cache is reused.

    python -m bench.compile_depth --layers 4 48 --repeats 2
"""
from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
from flax import nnx

from caujax.config import OptimConfig
from caujax.losses.params import SFTParams
from caujax.methods import METHODS
from caujax.models import Decoder, ModelConfig
from caujax.sharding import make_mesh, tree_shardings
from caujax.step import TrainState, make_optimizer, make_train_step


def lower_step(cfg: ModelConfig, batch: int, seq_len: int):
    """train.py's SFT train step (AdamW, one CPU device) for `cfg`, lowered from abstract shapes: never run."""
    mesh = make_mesh(devices=jax.devices()[:1])
    graphdef, params = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    tx = make_optimizer(OptimConfig(lr=1e-4), total_steps=10)
    state = jax.eval_shape(lambda p: TrainState(jnp.zeros((), jnp.int32), p, tx.init(p), jax.random.PRNGKey(0)),
                           params)
    step = make_train_step(functools.partial(METHODS["sft"].objective, params=SFTParams()), tx, graphdef=graphdef,
                           state_sharding=tree_shardings(state, mesh), mesh=mesh)
    rows = jax.ShapeDtypeStruct((batch, seq_len), jnp.int32)
    return step.lower(state, {"tokens_BT": rows, "mask_BT": rows, "loss_mask_BT": rows}, None)


def compile_seconds(cfg: ModelConfig, batch: int, seq_len: int) -> tuple[float, float]:
    """(trace + lower seconds, XLA compile seconds) of the SFT train step for `cfg`."""
    t0 = time.perf_counter()
    lowered = lower_step(cfg, batch, seq_len)
    t1 = time.perf_counter()
    lowered.compile()
    return t1 - t0, time.perf_counter() - t1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, nargs="+", default=[4, 48])
    ap.add_argument("--repeats", type=int, default=2, help="best of this many compilations per cell")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--remat", action="store_true", help="recompute each block in the backward pass")
    args = ap.parse_args(argv)

    # Small width (d=256, 4 heads x 64, MLP 1024, vocab 1024): compile time, not FLOPs, is what is measured.
    base = ModelConfig.tiny("qwen2", vocab_size=1024, embed_dim=256, num_heads=4, num_kv_heads=2, head_dim=64,
                            mlp_dim=1024, remat=args.remat)
    rows = {}
    for scan in (True, False):
        for L in args.layers:
            cfg = base.replace(num_layers=L, scan_layers=scan)
            best = min((compile_seconds(cfg, args.batch, args.seq_len) for _ in range(args.repeats)), key=sum)
            rows[scan, L] = best
            print(f"  {'scanned' if scan else 'unrolled'} L={L}: lower {best[0]:.2f} s, compile {best[1]:.2f} s",
                  flush=True)

    print(f"\ntrain step (make_train_step, SFT, AdamW), batch {args.batch} x {args.seq_len}, "
          f"d={base.embed_dim}{', remat' if args.remat else ''}; best of {args.repeats}")
    print("| layers | form | trace+lower s | XLA compile s | total s | vs scanned, fewest layers |")
    print("|---|---|---|---|---|---|")
    ref = sum(rows[True, min(args.layers)])
    for scan in (True, False):
        for L in args.layers:
            lower, comp = rows[scan, L]
            print(f"| {L} | {'scanned' if scan else 'unrolled'} | {lower:.2f} | {comp:.2f} | {lower + comp:.2f} "
                  f"| {(lower + comp) / ref:.2f}x |")
    deepest = sum(rows[True, max(args.layers)])
    print(f"\nscanned {max(args.layers)} layers / scanned {min(args.layers)} layers = {deepest / ref:.2f}x "
          f"(goal: within 2x)")


if __name__ == "__main__":
    main()
