"""Rollouts from a LoRA policy: sample through the unmerged adapters (what rl/rollout.py does) or merge
W + (alpha / r) A B first (models/lora.merge_adapters, once per rollout), side by side on one model shape.

Reports seconds per rollout for each (the merge included in its time), decode tokens/s, and whether the greedy
tokens agree. Random weights, adapters with B != 0 (a trained adapter), every completion full length.

    python -m bench.lora_sampler --layers 4 --dim 512 --rank 16 --rows 32 --new-tokens 64 --repeats 3
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time


def main(argv=None):
    import jax
    import numpy as np
    from flax import nnx

    from caujax.models import Decoder, ModelConfig
    from caujax.models.config import LoRAConfig
    from caujax.models.lora import join, merge_adapters, split_trainable
    from caujax.sampling.methods import SamplingParams
    from caujax.sampling.sampler import sample_ids

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--rows", type=int, default=32, help="completions per rollout")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)

    D = a.dim
    cfg = ModelConfig.tiny("qwen2", vocab_size=a.vocab, embed_dim=D, num_layers=a.layers, num_heads=D // 64,
                           num_kv_heads=max(D // 256, 1), head_dim=64, mlp_dim=3 * D)
    graphdef, state = nnx.split(Decoder(cfg.replace(lora=LoRAConfig(rank=a.rank, alpha=2.0 * a.rank)),
                                        rngs=nnx.Rngs(0)))
    adapters, base = split_trainable(state)
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 64))
    adapters = jax.tree.map(lambda v: 0.02 * jax.random.normal(next(keys), v.shape), adapters)
    adapted = nnx.merge(graphdef, join(adapters, base))
    prompts = np.random.RandomState(0).randint(1, a.vocab, (a.rows, a.prompt_len)).tolist()
    greedy = SamplingParams(temperature=0.0, max_new_tokens=a.new_tokens)

    def unmerged():
        return sample_ids(adapted, prompts, greedy)

    def merged():
        return sample_ids(merge_adapters(adapted), prompts, greedy)

    times = {"unmerged": [], "merged": []}
    out = {}
    for r in range(a.repeats + 1):               # the first round compiles; alternate so load hits both alike
        for name, fn in (("unmerged", unmerged), ("merged", merged)):
            t0 = time.perf_counter()
            out[name] = fn()
            if r:
                times[name].append(time.perf_counter() - t0)
    same = float(np.mean(out["unmerged"].tokens == out["merged"].tokens))
    tokens = a.rows * a.new_tokens
    print(f"\nLoRA rollout, {a.layers} layers, d={D}, vocab {a.vocab}, rank {a.rank} on all 7 projections, "
          f"{a.rows} rows x {a.prompt_len} prompt + {a.new_tokens} greedy tokens, float32, "
          f"{jax.devices()[0].platform}; medians of {a.repeats}\n")
    print("| sampler | s/rollout | decode tokens/s | greedy tokens equal |")
    print("|---|---|---|---|")
    for name in times:
        s = statistics.median(times[name])
        print(f"| {name} | {s:.3f} | {tokens / s:.0f} | {same:.1%} |")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
