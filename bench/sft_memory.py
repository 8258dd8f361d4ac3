"""Peak resident memory of a full fine-tuning SFT step of Gemma-3-270M (float32 master weights, AdamW), phase by
phase: after loading, with the train state built, after each step. Beside it, XLA's own buffer plan for the step
(`compiled.memory_analysis()`): arguments (parameters + AdamW moments) and temporaries (gradients, activations).
Every token of the batch is real and in the loss: the worst case for a batch of that shape.

    python -m bench.sft_memory --batch 4 --seq-len 512 --steps 2
    python -m bench.sft_memory --model path/to/hf_dir --remat none

Target (issue: speed): peak <= 6 GB for Gemma-3-270M at 4 x 512; parameters, gradients and two moments alone are
4.3 GB. Run it alone on the machine: resident memory is the process's, measured, not planned.
"""
from __future__ import annotations

import argparse
import functools
import time

from bench import machine
from bench.machine import GB


def rss_gb() -> float:
    """Current resident set size (VmRSS) in GB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / GB
    return float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="HF checkpoint dir or .gguf (default: the packaged Gemma-3-270M)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--remat", default="full", help="ModelConfig.remat policy (the demo's SFT uses full)")
    args = ap.parse_args(argv)

    import jax
    import numpy as np
    from flax import nnx

    from caujax.config import OptimConfig
    from caujax.losses.params import SFTParams
    from caujax.methods import METHODS
    from caujax.models import Decoder, load_pretrained
    from caujax.models.gguf import gemma3_270m_path
    from caujax.models.load import release_host_memory
    from caujax.sharding import make_mesh
    from caujax.step import init_state, make_optimizer, make_train_step, place_batch

    machine.describe(measure=False)
    path = args.model or gemma3_270m_path()
    rows = [("start", rss_gb(), machine.peak_rss_gb(), None)]
    model, _ = load_pretrained(path, dtype="float32")
    release_host_memory()
    cfg = model.cfg.replace(remat=args.remat)
    _, params = nnx.split(model)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))   # carries the remat policy
    del model
    n_params = sum(x.size for x in jax.tree.leaves(params))
    rows.append(("model loaded", rss_gb(), machine.peak_rss_gb(), None))

    mesh = make_mesh(devices=jax.devices()[:1])
    tx = make_optimizer(OptimConfig(lr=1e-5, max_grad_norm=1.0), args.steps)
    state, sharding = init_state(params, tx, mesh, seed=0)
    del params
    step = make_train_step(functools.partial(METHODS["sft"].objective, params=SFTParams()), tx, graphdef=graphdef,
                           state_sharding=sharding, mesh=mesh)
    rows.append(("train state built", rss_gb(), machine.peak_rss_gb(), None))

    rng = np.random.default_rng(0)
    shape = (args.batch, args.seq_len)
    batch = {"tokens_BT": rng.integers(10, cfg.vocab_size, shape, dtype=np.int32),
             "mask_BT": np.ones(shape, np.int32), "loss_mask_BT": np.ones(shape, np.int32)}
    for i in range(args.steps):
        t0 = time.perf_counter()
        state, metrics = step(state, place_batch(batch, mesh), None)
        loss = float(metrics["loss"])             # waits for the step
        rows.append((f"step {i + 1} (loss {loss:.3f})", rss_gb(), machine.peak_rss_gb(), time.perf_counter() - t0))
    jax.block_until_ready(state)
    # After the steps, so that this second compilation is not in the measured peak.
    plan = step.lower(state, place_batch(batch, mesh), None).compile().memory_analysis()

    print(f"\n{path}: {n_params / 1e6:.0f} M parameters, SFT {args.batch} x {args.seq_len}, float32, AdamW, "
          f"remat={args.remat}; params + grads + 2 moments = {16 * n_params / GB:.2f} GB")
    print(f"XLA plan of the step: arguments {plan.argument_size_in_bytes / GB:.2f} GB, "
          f"temporaries {plan.temp_size_in_bytes / GB:.2f} GB\n")
    print("| phase | resident GB | peak so far GB | s |\n|---|---|---|---|")
    for name, now, peak, s in rows:
        print(f"| {name} | {now:.2f} | {peak:.2f} | {'' if s is None else f'{s:.1f}'} |")
    print(f"\npeak resident memory: {machine.peak_rss_gb():.2f} GB (target <= 6 GB)")


if __name__ == "__main__":
    main()
