"""Training-step MFU and decode speed against the accelerator's peaks, for one model shape with random weights.

    python -m bench.mfu --shape Qwen2.5-1.5B-Instruct --batch 8 --seq-len 2048 --decode-rows 64 [--dtype bfloat16]
    python -m bench.mfu --layers 2 --dim 256 --vocab 4096 --batch 2 --seq-len 128 --decode-rows 4   (CPU smoke)

Train: the SFT step of caujax.step (AdamW, float32 master weights, --dtype compute, --remat) on a
--batch x --seq-len batch of random tokens, all devices in one fsdp mesh; tokens/s over --steps timed steps after
one compiling step, and MFU = model FLOPs (bench.machine.train_flops: 6N + attention, PaLM appendix B) per second
over the peak. Decode: caujax's sampler, greedy, --decode-rows prompts of --prompt-len tokens, --new-tokens each
(no early stop: random weights are not asked to end); decode tokens/s against the memory-bandwidth roofline (each
step reads every weight once and each row's KV cache: bench.machine.decode_step_bytes).

Peaks (dense bf16 FLOP/s, HBM bytes/s, per chip) come from PEAKS by device kind, or --peak-tflops / --peak-gbs;
on a CPU from bench.machine's measured matmul and copy ceilings. The output names the device and the peaks used.
"""
from __future__ import annotations

import argparse
import json
import time

# Vendor datasheet figures, dense (no sparsity) bf16 TFLOP/s and HBM GB/s per chip.
PEAKS = {
    "H200": (989.0, 4800.0), "H100 PCIe": (756.0, 2000.0), "H100 NVL": (835.0, 3900.0),
    "H100": (989.0, 3350.0),                      # SXM; after the PCIe and NVL entries, which contain "H100" too
    "A100": (312.0, 2039.0), "L4": (121.0, 300.0),
    "TPU v6": (918.0, 1640.0), "TPU v5p": (459.0, 2765.0), "TPU v5 lite": (197.0, 819.0), "TPU v5e": (197.0, 819.0),
    "TPU v4": (275.0, 1228.0), "TPU v5": (459.0, 2765.0),    # JAX names v5p "TPU v5": after the lite entries
}


def peaks(device, tflops: float | None, gbs: float | None, dtype: str) -> tuple[float, float, str]:
    """(peak TFLOP/s, peak GB/s, where they came from) for one device."""
    if tflops and gbs:
        return tflops, gbs, "given on the command line"
    kind = device.device_kind
    for name, (f, b) in PEAKS.items():
        if name.lower() in kind.lower():
            return tflops or f, gbs or b, f"datasheet figures for {name}"
    if device.platform == "cpu":
        from bench import machine
        f = machine.ceiling("xla", dtype) / 1e3
        return tflops or f, gbs or machine.ceilings()["bandwidth"]["best"], "measured on this CPU (bench.machine)"
    raise SystemExit(f"no peak figures for device kind {kind!r}: pass --peak-tflops and --peak-gbs")


def model_config(a):
    from caujax.models import ModelConfig
    if a.shape:
        from caujax.plan import shape_config
        arch = shape_config(a.shape)
    else:
        arch = ModelConfig.tiny("qwen2", vocab_size=a.vocab, embed_dim=a.dim, num_layers=a.layers,
                                num_heads=max(a.dim // 64, 1), num_kv_heads=max(a.dim // 256, 1), head_dim=64,
                                mlp_dim=4 * a.dim)
    return arch.replace(param_dtype="float32", compute_dtype=a.dtype, remat=a.remat)


def bench_train(arch, a) -> dict:
    import functools

    import jax
    import numpy as np
    from flax import nnx

    from bench import machine
    from caujax.config import OptimConfig
    from caujax.losses import sft
    from caujax.losses.params import SFTParams
    from caujax.models import Decoder
    from caujax.sharding import make_mesh, tree_shardings
    from caujax.step import init_state, make_optimizer, make_train_step, place_batch

    mesh = make_mesh(fsdp=-1)
    make = lambda: nnx.state(Decoder(arch, rngs=nnx.Rngs(0)))
    params = jax.jit(make, out_shardings=tree_shardings(jax.eval_shape(make), mesh))()
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(arch, rngs=nnx.Rngs(0))))
    tx = make_optimizer(OptimConfig(lr=1e-5), a.steps + 1)
    state, sharding = init_state(params, tx, mesh, 0)
    del params
    step = make_train_step(functools.partial(sft.objective, params=SFTParams()), tx, graphdef=graphdef,
                           state_sharding=sharding, mesh=mesh, num_micro_batches=a.micro_batches)
    rs = np.random.RandomState(0)
    B, T = a.batch, a.seq_len
    batch = {"tokens_BT": rs.randint(1, arch.vocab_size, (B, T)).astype(np.int32),
             "mask_BT": np.ones((B, T), np.int32), "loss_mask_BT": np.ones((B, T), np.int32)}
    batch = place_batch(batch, mesh)
    t0 = time.perf_counter()
    state, m = step(state, batch, None)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(a.steps):
        state, m = step(state, batch, None)
    jax.block_until_ready(m)
    seconds = (time.perf_counter() - t0) / a.steps
    flops = machine.train_flops(arch, B * T, T)
    return {"step_s": seconds, "first_step_s": compile_s, "tokens_per_s": B * T / seconds,
            "model_tflops_per_s": flops / seconds / 1e12, "devices": len(jax.devices())}


def bench_decode(arch, a) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    from bench import machine
    from caujax.models import Decoder
    from caujax.sampling.methods import SamplingParams
    from caujax.sampling.sampler import sample_ids
    from caujax.sharding import make_mesh

    model = Decoder(arch, rngs=nnx.Rngs(0))
    rs = np.random.RandomState(1)
    prompts = [rs.randint(1, arch.vocab_size, a.prompt_len).tolist() for _ in range(a.decode_rows)]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=a.new_tokens)
    mesh = make_mesh(data=-1) if len(jax.devices()) > 1 else None
    sample_ids(model, prompts, params, mesh=mesh)                 # compile
    t0 = time.perf_counter()
    out = sample_ids(model, prompts, params, mesh=mesh)
    seconds = time.perf_counter() - t0
    tokens = int(out.lengths.sum())
    context = a.prompt_len + a.new_tokens / 2
    param_bytes = 2 if a.dtype == "bfloat16" else 4
    per_device_rows = max(a.decode_rows // len(jax.devices()), 1)
    step_bytes = machine.decode_step_bytes(arch, per_device_rows, context, param_bytes)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "step_bytes_per_device": step_bytes, "steps": a.new_tokens}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.mfu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default=None, help="a name in configs/shapes or a config.json (else --layers/--dim)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="compute dtype")
    ap.add_argument("--remat", default="none", help="remat policy (models/config.py REMAT_POLICIES)")
    ap.add_argument("--batch", type=int, default=2, help="training rows per step (global)")
    ap.add_argument("--micro-batches", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (after one compiling step)")
    ap.add_argument("--decode-rows", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--peak-tflops", type=float, default=None, help="per-device peak (default: PEAKS / measured)")
    ap.add_argument("--peak-gbs", type=float, default=None, help="per-device memory bandwidth, GB/s")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    import jax

    from bench import machine

    arch = model_config(a)
    device = jax.devices()[0]
    tflops, gbs, source = peaks(device, a.peak_tflops, a.peak_gbs, a.dtype)
    train = bench_train(arch, a)
    decode = bench_decode(arch, a)
    n = train["devices"]
    train["mfu"] = train["model_tflops_per_s"] / (tflops * n)
    roofline_step_s = decode["step_bytes_per_device"] / (gbs * 1e9)
    decode["roofline_tokens_per_s"] = a.decode_rows / roofline_step_s
    decode["of_roofline"] = decode["tokens_per_s"] / decode["roofline_tokens_per_s"]
    out = {"device": f"{n} x {device.device_kind} ({device.platform})", "peak_tflops": tflops, "peak_gbs": gbs,
           "peaks_from": source, "params": machine.matmul_params(arch), "dtype": a.dtype, "remat": arch.remat,
           "train": train, "decode": decode, "peak_rss_gb": machine.peak_rss_gb()}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"device {out['device']}; peaks {tflops:.3g} TFLOP/s, {gbs:.0f} GB/s per device ({source})\n"
              f"model {out['params'] / 1e9:.3f} B matmul params, {a.dtype} compute, remat={arch.remat}\n"
              f"train  {a.batch} x {a.seq_len} tokens: {train['step_s']:.3f} s/step, "
              f"{train['tokens_per_s']:,.0f} tokens/s, {train['model_tflops_per_s']:.2f} model TFLOP/s, "
              f"MFU {100 * train['mfu']:.1f}% (first step {train['first_step_s']:.1f} s)\n"
              f"decode {a.decode_rows} rows x {a.new_tokens} tokens: {decode['tokens_per_s']:,.0f} tokens/s, "
              f"{100 * decode['of_roofline']:.1f}% of the bandwidth roofline "
              f"({decode['roofline_tokens_per_s']:,.0f} tokens/s)\n"
              f"peak RSS {out['peak_rss_gb']:.2f} GB")
    return out


if __name__ == "__main__":
    main()
