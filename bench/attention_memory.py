"""Peak memory of a long-sequence SFT step, plain vs blockwise attention, from XLA's own buffer plan: the step
(forward, backward, AdamW update) is lowered from abstract shapes and compiled, never run, so a 1B-class model at
4,096 tokens fits the plan on any machine. Reported: XLA's temporary buffers (activations, scores, gradients in
flight) and arguments (parameters and optimizer state), per attention kernel, with remat on and off.

    python -m bench.attention_memory --tokens 4096
"""
from __future__ import annotations

import argparse

from bench import machine


def plan(cfg, tokens: int, batch: int) -> tuple[int, int]:
    """(XLA temporary bytes, argument bytes) of the compiled SFT train step for `cfg` on batch x tokens."""
    from bench.compile_depth import lower_step

    m = lower_step(cfg, batch, tokens).compile().memory_analysis()
    return m.temp_size_in_bytes, m.argument_size_in_bytes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args(argv)
    from caujax.models import ModelConfig

    # Llama 3.2 1B's shape: 16 layers, d 2048, 32 query / 8 kv heads of 64, MLP 8192, vocab 128256, tied.
    base = ModelConfig.tiny("llama", vocab_size=128256, embed_dim=2048, num_layers=16, num_heads=32, num_kv_heads=8,
                            head_dim=64, mlp_dim=8192, tie_embeddings=True)
    machine.describe(measure=False)
    print(f"\nSFT step plan, Llama-3.2-1B shape, {args.batch} x {args.tokens} tokens, float32, AdamW (compiled, not "
          f"run)\n\n| attention | remat | XLA temp GB | arguments GB |\n|---|---|---|---|")
    for remat in (False, True):
        for impl in ("plain", "blockwise"):
            temp, arg = plan(base.replace(attention=impl, remat=remat), args.tokens, args.batch)
            print(f"| {impl} | {remat} | {temp / 1e9:.2f} | {arg / 1e9:.2f} |", flush=True)


if __name__ == "__main__":
    main()
