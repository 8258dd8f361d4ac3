"""Decode throughput: the caujax jitted KV-cache sampler vs transformers `generate`, same weights, prompts and
sampling settings, runs interleaved so machine load hits both alike. Prints the machine (bench/machine.py: CPU,
threads, measured matmul and memory-bandwidth ceilings) and a markdown table with the ratio.

Sampling: greedy by default (--temperature 0); `--temperature 0.6 --top-p 0.95` is the paper's (CauGym) sampling,
given to both sides alike (transformers: do_sample=True, top_k=0, torch seed 0; caujax: SamplingParams, seed 0).
Token identity with transformers is checked only when greedy. No early stop on either side: every row decodes
--new tokens (transformers min_new_tokens = new, no EOS; caujax no EOS ids).

--dtype float32|bfloat16: caujax loads parameters and computes (KV cache included) in that dtype
(load_pretrained(dtype=...): param_dtype = compute_dtype); transformers loads the model in that torch dtype.

Decode tokens/s excludes the prefill: each repeat also times a run with one new token (prefill + the first token),
and decode tokens/s = batch x (new - 1) / (full run - that run). The memory-bandwidth bound is what a decode step
must at least read (every matmul weight once, the unembedding included, plus the KV cache up to the mean context
prompt + new / 2; machine.decode_step_bytes) over the bandwidth measured in this process: batch / that time.

    python -m bench.sampler_vs_hf --model tiny-qwen2 --batch 8 --prompt-len 64 --new 128 --repeats 3
    python -m bench.sampler_vs_hf --model gemma3-270m --batch 4 --prompt-len 64 --new 64 --repeats 3
    python -m bench.sampler_vs_hf --model tiny-qwen2 --temperature 0.6 --top-p 0.95 --dtype bfloat16
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from bench import machine


def _tiny_qwen2(path):
    import torch
    import transformers

    from caujax.models import ModelConfig
    from caujax.models.hf import config_to_hf

    cfg = ModelConfig.tiny("qwen2", vocab_size=4096, embed_dim=256, num_layers=4, num_heads=8, num_kv_heads=2,
                           head_dim=32, mlp_dim=768)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config_to_hf(cfg)).eval()
    model.save_pretrained(path)
    return model, path


def _load(name: str, workdir: str, dtype: str):
    """(caujax model, torch model) holding the same weights, both in `dtype`."""
    import torch
    import transformers

    from caujax.models import load_pretrained

    if name == "tiny-qwen2":
        torch_model, path = _tiny_qwen2(workdir)
        return load_pretrained(path, dtype=dtype)[0], torch_model.to(getattr(torch, dtype))
    if name == "gemma3-270m":
        from caujax.models.gguf import gemma3_270m_path

        gguf = gemma3_270m_path()
        torch_model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype)).eval()
        return load_pretrained(gguf, dtype=dtype)[0], torch_model
    raise SystemExit(f"unknown --model {name!r}; choose tiny-qwen2 or gemma3-270m")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-qwen2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; the paper samples at 0.6")
    ap.add_argument("--top-p", type=float, default=1.0, help="nucleus top-p; the paper uses 0.95")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="caujax param_dtype = compute_dtype; transformers torch dtype")
    args = ap.parse_args(argv)
    if args.new < 2:
        ap.error("--new must be >= 2 (decode tokens/s subtracts a one-token run)")

    import torch

    from caujax.sampling import SamplingParams, sample_ids

    torch.set_num_threads(max(1, torch.get_num_threads()))
    machine.describe()
    greedy = args.temperature == 0
    with tempfile.TemporaryDirectory() as tmp:
        model, torch_model = _load(args.model, tmp, args.dtype)
        rng = np.random.default_rng(0)
        prompts = rng.integers(10, model.cfg.vocab_size, (args.batch, args.prompt_len)).tolist()
        params = {n: SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=0, max_new_tokens=n,
                                    seed=0) for n in (args.new, 1)}
        t0 = time.perf_counter()
        ours = sample_ids(model, prompts, params[args.new]).tokens          # compile + first run
        compile_s = time.perf_counter() - t0
        sample_ids(model, prompts, params[1])                                # compile the one-token program
        ids = torch.tensor(prompts)
        sampling = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=args.temperature,
                                                             top_p=args.top_p, top_k=0)

        def hf(n):
            torch.manual_seed(0)
            with torch.no_grad():
                return torch_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                            min_new_tokens=n, pad_token_id=0, eos_token_id=None, **sampling)

        hf(1)                                                                # warm-up (thread pool, allocator)
        times = {k: {"full": [], "first": []} for k in ("caujax", "transformers")}
        for _ in range(args.repeats):
            for n, key in ((args.new, "full"), (1, "first")):
                t0 = time.perf_counter()
                out = sample_ids(model, prompts, params[n]).tokens
                times["caujax"][key].append(time.perf_counter() - t0)
                if n == args.new:
                    ours = out
                t0 = time.perf_counter()
                out = hf(n)
                times["transformers"][key].append(time.perf_counter() - t0)
                if n == args.new:
                    theirs = out
        agree = float((np.asarray(theirs[:, args.prompt_len:]) == ours).mean()) if greedy else None
        hf_dtype = str(next(torch_model.parameters()).dtype).removeprefix("torch.")
    nbytes = 2 if args.dtype == "bfloat16" else 4
    bound = machine.decode_bytes_bound(model.cfg, args.batch, args.prompt_len + args.new / 2, param_bytes=nbytes)
    tokens = args.batch * args.new
    how = (f"greedy, tokens identical to transformers: {agree:.1%}" if greedy else
           f"temperature {args.temperature}, top_p {args.top_p} (sampled: token identity not checked)")
    print(f"\n{args.model}: batch {args.batch}, prompt {args.prompt_len}, {args.new} new tokens, {how}; "
          f"{args.dtype} (caujax param/compute {model.cfg.param_dtype}/{model.cfg.compute_dtype}, transformers "
          f"{hf_dtype}); {args.repeats} interleaved repeats (caujax compile + first run {compile_s:.1f} s)\n")
    print("| sampler | median s | tokens/s | prefill + 1st token s | decode tokens/s | % of bandwidth bound |\n"
          "|---|---|---|---|---|---|")
    med = {}
    for k, t in times.items():
        full, first = statistics.median(t["full"]), statistics.median(t["first"])
        decode = args.batch * (args.new - 1) / max(full - first, 1e-9)
        med[k] = full
        print(f"| {k} | {full:.2f} | {tokens / full:.0f} | {first:.3f} | {decode:.0f} | "
              f"{100 * decode / bound['tokens_per_s']:.1f}% |")
    bw = machine.ceilings()["bandwidth"]["best"]
    print(f"\nmemory-bandwidth bound: {bound['bytes'] / 1e6:.1f} MB read per decode step ({args.dtype} weights "
          f"{machine.matmul_params(model.cfg) * nbytes / 1e6:.1f} MB + KV cache at mean context "
          f"{args.prompt_len + args.new / 2:.0f}) / {bw:.1f} GB/s measured = {bound['seconds'] * 1e3:.2f} ms a step, "
          f"{bound['tokens_per_s']:.0f} tokens/s at batch {args.batch}")
    print(f"ratio caujax / transformers (tokens/s): {med['transformers'] / med['caujax']:.2f}x")
    print(f"peak RSS of the process (after machine.describe): {machine.peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
