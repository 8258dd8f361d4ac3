"""A decoded token's attention over the sampler's KV cache: every slot (the plain form) against the filled columns
only (models/decode_attention.py, blocks of --blocks), alternating in one process, median of --repeats.

--what layer: one layer's attention alone, Gemma-3-270M's shapes (18-layer stacked cache, 1 kv head x 256, 4 query
heads), random keys and values. --what step: Gemma-3-270M's whole decode step (the GGUF from PyPI), the cache
donated as in the sampler's loop; attention="plain" against "auto" with attention_block = each block.

    python -m bench.decode_attention --what layer --rows 64 --cache 512 --filled 129,257,385,512 --blocks 64,128,256
    python -m bench.decode_attention --what step --rows 64 --cache 512 --filled 257,385,512 --blocks 128
"""
from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench import machine


def _layer_fns(blocks):
    from caujax.models.attention import attend
    from caujax.models.decode_attention import decode_attend

    def plain(q, cache, layer, q_pos):
        k_pos = cache["pos"][layer]
        return attend(q, cache["k"][layer], cache["v"][layer], q_pos, k_pos, jnp.ones_like(q_pos),
                      (k_pos >= 0).astype(jnp.int32), scale=0.0625, impl="plain")

    fns = {"plain": jax.jit(plain)}
    for b in blocks:
        fns[f"blocks of {b}"] = jax.jit(lambda q, cache, layer, q_pos, b=b: decode_attend(
            q, cache, layer, q_pos, jnp.ones_like(q_pos), scale=0.0625, block=b))
    return fns


def _step_fns(model, blocks):
    from flax import nnx

    from caujax.models import Decoder

    _, state = nnx.split(model)
    fns = {}
    for name, impl, block in [("plain", "plain", 256)] + [(f"blocks of {b}", "auto", b) for b in blocks]:
        cfg = model.cfg.replace(attention=impl, attention_block=block)
        graphdef = nnx.graphdef(nnx.eval_shape(lambda cfg=cfg: Decoder(cfg, rngs=nnx.Rngs(0))))

        @functools.partial(jax.jit, donate_argnums=2)
        def step(state, tokens, cache, q_pos, graphdef=graphdef):
            return nnx.merge(graphdef, state).decode(tokens, q_pos, jnp.ones_like(tokens), cache)  # cache aliased
        fns[name] = functools.partial(step, state)
    return fns


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=("layer", "step"), default="layer")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--cache", type=int, default=512, help="allocated cache columns S")
    ap.add_argument("--filled", default="129,257,385,512", help="filled columns to time, comma-separated")
    ap.add_argument("--blocks", default="64,128,256")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    machine.describe()
    blocks = [int(b) for b in args.blocks.split(",")]
    B, S, rng = args.rows, args.cache, np.random.default_rng(0)
    if args.what == "layer":
        L, K, G, H = 18, 1, 4, 256
        fns, q = _layer_fns(blocks), jnp.asarray(rng.standard_normal((B, 1, K, G, H)), jnp.float32)
    else:
        from caujax.models import load_pretrained
        from caujax.models.gguf import gemma3_270m_path

        model = load_pretrained(gemma3_270m_path())[0]
        cfg = model.cfg
        L, K, H = cfg.num_layers, cfg.num_kv_heads, cfg.head_dim
        fns, q = _step_fns(model, blocks), jnp.asarray(rng.integers(10, 1000, (B, 1)), jnp.int32)
    k, v = (jnp.asarray(rng.standard_normal((L, B, S, K, H)), jnp.float32) for _ in range(2))
    print(f"\n{args.what}: {B} rows x {S} cache columns, float32, median of {args.repeats} alternating repeats (ms)\n")
    print("| columns filled | " + " | ".join(fns) + " |\n" + "|---" * (len(fns) + 1) + "|")
    for filled in (int(f) for f in args.filled.split(",")):
        at = filled - 1                     # the column this step's token was written to
        pos = jnp.broadcast_to(jnp.where(jnp.arange(S) <= at, jnp.arange(S), -1).astype(jnp.int32), (L, B, S))
        cache = {"k": k, "v": v, "pos": pos, "at": jnp.asarray(at, jnp.int32)}
        q_pos = jnp.full((B, 1), at, jnp.int32)
        # A step writes this token's keys at column `at` and attends over [0, at]: `filled` columns. The step
        # mode's cache is donated, so each call gets a fresh copy, made outside the timing.
        fresh = (lambda: jax.block_until_ready(jax.tree.map(jnp.copy, cache))) if args.what == "step" else None
        call = ((lambda f, c: f(q, c, jnp.asarray(7, jnp.int32), q_pos)) if args.what == "layer" else
                (lambda f, c: f(q, c, q_pos)))
        first = lambda out: out[0] if isinstance(out, tuple) else out      # the step's logits
        outs = {name: np.asarray(first(call(f, fresh() if fresh else cache))) for name, f in fns.items()}  # compile
        worst = max(float(np.abs(o - outs["plain"]).max()) for o in outs.values())
        times = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, f in fns.items():
                c = fresh() if fresh else cache
                t0 = time.perf_counter()
                jax.block_until_ready(call(f, c))
                times[name].append(time.perf_counter() - t0)
        print(f"| {filled} | " + " | ".join(f"{1e3 * statistics.median(t):.1f}" for t in times.values())
              + f" |  (max |difference| to plain {worst:.1e})")
    print(f"\npeak RSS of the process: {machine.peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
