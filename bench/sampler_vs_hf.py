"""Decode throughput: the caujax jitted KV-cache sampler vs transformers `generate`, same weights, prompts and
greedy settings, runs interleaved so machine load hits both alike. Prints a markdown table with the ratio.

    python -m bench.sampler_vs_hf --model tiny-qwen2 --batch 8 --prompt-len 64 --new 128 --repeats 3
    python -m bench.sampler_vs_hf --model gemma3-270m --batch 4 --prompt-len 64 --new 64 --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np


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


def _load(name: str, workdir: str):
    """(caujax model, torch model) holding the same weights."""
    import torch
    import transformers

    from caujax.models import load_pretrained

    if name == "tiny-qwen2":
        torch_model, path = _tiny_qwen2(workdir)
        return load_pretrained(path)[0], torch_model
    if name == "gemma3-270m":
        from caujax.models.gguf import gemma3_270m_path

        gguf = gemma3_270m_path()
        torch_model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
        return load_pretrained(gguf)[0], torch_model
    raise SystemExit(f"unknown --model {name!r}; choose tiny-qwen2 or gemma3-270m")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-qwen2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    from caujax.sampling import SamplingParams, sample_ids

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        model, torch_model = _load(args.model, tmp)
        rng = np.random.default_rng(0)
        prompts = rng.integers(10, model.cfg.vocab_size, (args.batch, args.prompt_len)).tolist()
        params = SamplingParams(temperature=0, max_new_tokens=args.new)
        t0 = time.perf_counter()
        ours = sample_ids(model, prompts, params).tokens           # compile + first run
        compile_s = time.perf_counter() - t0
        ids = torch.tensor(prompts)
        tokens = args.batch * args.new
        times = {"caujax": [], "transformers": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ours = sample_ids(model, prompts, params).tokens
            times["caujax"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with torch.no_grad():
                hf = torch_model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                          max_new_tokens=args.new, min_new_tokens=args.new, pad_token_id=0,
                                          eos_token_id=None)
            times["transformers"].append(time.perf_counter() - t0)
        agree = float((np.asarray(hf[:, args.prompt_len:]) == ours).mean())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{args.model}: batch {args.batch}, prompt {args.prompt_len}, {args.new} new tokens, greedy, "
          f"{args.repeats} interleaved repeats (caujax compile + first run {compile_s:.1f} s; "
          f"greedy tokens identical to transformers: {agree:.1%})\n")
    print("| sampler | median s | tokens/s |\n|---|---|---|")
    for k in ("caujax", "transformers"):
        print(f"| {k} | {med[k]:.2f} | {tokens / med[k]:.0f} |")
    print(f"\nratio caujax / transformers (tokens/s): {med['transformers'] / med['caujax']:.2f}x")


if __name__ == "__main__":
    main()
