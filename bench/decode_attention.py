"""A decoded token's attention over the sampler's KV cache: every slot (the plain form) against the filled columns
only (models/decode_attention.py), alternating in one process, median of --repeats.

--what layer: one layer's attention alone, Gemma-3-270M's shapes (18-layer stacked cache, 1 kv head x 256, 4 query
heads), random keys and values, against blocks of each --blocks. --what sampler: the sampler's jitted loop on
Gemma-3-270M (the GGUF from PyPI), --new greedy steps from a cache allocated for each --cache length, attention
"plain" (what "auto" decoded with before) against "auto" (the filled columns, blocks of 128).

    python -m bench.decode_attention --what layer --rows 64 --cache 512 --filled 129,257,385,512 --blocks 64,128,256
    python -m bench.decode_attention --what sampler --rows 16 --cache 192,1024,4096 --new 16 --repeats 2
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


def _sampler_run(model, impl: str, rows: int, prompt_len: int, new: int, cache_len: int):
    """A callable running the sampler's jitted program (prefill + `new` greedy decode steps) with a cache allocated
    for `cache_len` columns, as sample_ids allocates prompt + max_new_tokens: the loop the evaluations and rollouts
    run. Calls the private sampler._sample to set the cache length apart from the steps decoded."""
    from flax import nnx

    from caujax.models import Decoder
    from caujax.sampling import SamplingParams
    from caujax.sampling.sampler import _sample

    cfg = model.cfg.replace(attention=impl)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    state = nnx.state(model)
    tokens = jnp.asarray(np.random.default_rng(0).integers(10, 1000, (rows, prompt_len)), jnp.int32)
    params = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=new, seed=0)
    return lambda: jax.block_until_ready(_sample(
        graphdef, state, tokens, jnp.ones_like(tokens), jnp.asarray(rows, jnp.int32), jax.random.key(0),
        params=params, eos_ids=(), stop_ids=(), cache_len=cache_len)[0])


def _sampler(args):
    from caujax.models import load_pretrained
    from caujax.models.gguf import gemma3_270m_path

    model = load_pretrained(gemma3_270m_path())[0]
    print(f"\nGemma-3-270M sampler loop: {args.rows} rows, prompt {args.prompt_len}, {args.new} greedy steps, float32; "
          f"seconds a call (prefill included), median of {args.repeats} alternating repeats\n")
    print("| cache columns | auto before (plain: every slot) | auto now (filled columns) | ratio |\n|---|---|---|---|")
    for cache_len in (int(c) for c in args.cache.split(",")):
        runs = {impl: _sampler_run(model, impl, args.rows, args.prompt_len, args.new, cache_len)
                for impl in ("plain", "auto")}
        outs = {impl: np.asarray(run()) for impl, run in runs.items()}          # compile
        same = float((outs["plain"] == outs["auto"]).mean())
        times = {impl: [] for impl in runs}
        for _ in range(args.repeats):
            for impl, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[impl].append(time.perf_counter() - t0)
        plain, auto = (statistics.median(times[i]) for i in ("plain", "auto"))
        print(f"| {cache_len} | {plain:.2f} | {auto:.2f} | {plain / auto:.2f}x |  (greedy tokens equal: {same:.1%})")


def _layer(args):
    blocks = [int(b) for b in args.blocks.split(",")]
    L, B, S, K, G, H = 18, args.rows, int(args.cache), 1, 4, 256
    rng = np.random.default_rng(0)
    fns, q = _layer_fns(blocks), jnp.asarray(rng.standard_normal((B, 1, K, G, H)), jnp.float32)
    k, v = (jnp.asarray(rng.standard_normal((L, B, S, K, H)), jnp.float32) for _ in range(2))
    print(f"\none layer: {B} rows x {S} cache columns, float32, median ms of {args.repeats} alternating repeats\n")
    print("| columns filled | " + " | ".join(fns) + " |\n" + "|---" * (len(fns) + 1) + "|")
    for filled in (int(f) for f in args.filled.split(",")):
        at = filled - 1                 # this step's token was written at column `at`: [0, at] are filled
        pos = jnp.broadcast_to(jnp.where(jnp.arange(S) <= at, jnp.arange(S), -1).astype(jnp.int32), (L, B, S))
        cache = {"k": k, "v": v, "pos": pos, "at": jnp.asarray(at, jnp.int32)}
        call = functools.partial(lambda f, q_pos: f(q, cache, jnp.asarray(7, jnp.int32), q_pos),
                                 q_pos=jnp.full((B, 1), at, jnp.int32))
        outs = {name: np.asarray(call(f)) for name, f in fns.items()}         # compile
        worst = max(float(np.abs(o - outs["plain"]).max()) for o in outs.values())
        times = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, f in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(call(f))
                times[name].append(time.perf_counter() - t0)
        print(f"| {filled} | " + " | ".join(f"{1e3 * statistics.median(t):.1f}" for t in times.values())
              + f" |  (max |difference| to plain {worst:.1e})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=("layer", "sampler"), default="layer")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--cache", default="512", help="allocated cache columns S (sampler: comma-separated)")
    ap.add_argument("--prompt-len", type=int, default=64, help="sampler: prompt columns")
    ap.add_argument("--new", type=int, default=16, help="sampler: greedy decode steps")
    ap.add_argument("--filled", default="129,257,385,512", help="filled columns to time, comma-separated")
    ap.add_argument("--blocks", default="64,128,256")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    machine.describe()
    if args.what == "sampler":
        _sampler(args)
    else:
        _layer(args)
    print(f"\npeak RSS of the process: {machine.peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
