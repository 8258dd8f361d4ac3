"""Training-step throughput: caujax's jitted SFT/DPO/KTO step vs TRL's SFTTrainer/DPOTrainer/KTOTrainer on the
same weights, the same generated causal problems and the same tokenizer, AdamW, no gradient checkpointing on either
side. Reports the median seconds per optimizer step (compile excluded), real (non-pad) tokens per second, and each
side's model GFLOP/s (bench/machine.py: train_flops, PaLM-style 6N + attention) with its share of the matmul ceiling
measured in this process for its library and precision (caujax: XLA, TRL: torch). caujax's batches come from the
method's own batch source (methods.METHODS[m].batches, as train.py builds them) and, as caujax's default, pad each
batch to its longest row rounded up to 128 (--pad-multiple 0: every row to --seq-len, one compiled shape); TRL pads
to the longest row of each batch. "padded GFLOP/s" counts
the padded shape; peak RSS is per side, the peak during its own runs (machine.reset_peak_rss before each).

--precision float32: float32 weights and compute on both sides. --precision bf16: float32 master weights and AdamW
on both sides, bfloat16 compute: caujax ModelConfig.compute_dtype="bfloat16" (param_dtype float32, as train.py
builds it), TRL `bf16=True` with the model loaded in float32 (torch autocast, TRL's default mixed precision).

KTO: desirable and undesirable completions of the same problems (data/pairs.py), beta 0.1, the KL reference point
from mismatched pairs rotated within each batch (caujax kl_group = --batch, TRL per_device_train_batch_size); a step
is the policy's forward + backward on the rows plus forward-only passes of the policy on the KL rows and of the
reference on both (TRL recomputes reference log-probs each step: precompute_ref_log_probs=False).

    python -m bench.step_vs_trl --method sft --batch 8 --seq-len 512 --steps 6
    python -m bench.step_vs_trl --method dpo --batch 4 --seq-len 512 --steps 6
    python -m bench.step_vs_trl --method kto --batch 8 --seq-len 512 --steps 6
    python -m bench.step_vs_trl --method sft --batch 8 --seq-len 512 --steps 6 --precision bf16
    python -m bench.step_vs_trl --method sft --batch 8 --seq-len 512 --steps 6 --unrolled   # scan_layers=False
    python -m bench.step_vs_trl --method sft --batch 4 --seq-len 512 --steps 1 --repeats 1 --precision bf16 \
        --model ~/.cache/caujax/gemma-3-270m-q4_k_m      # Gemma-3-270M, as `make demo` converts it
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

from bench import machine


def _texts(method: str, n: int, tokenizer_vocab: int, model_dir=None):
    """(examples, tokenizer): generated problems as SFT examples, DPO pairs or KTO rows, and a SentencePiece
    tokenizer trained on them, or `model_dir`'s own tokenizer."""
    import transformers

    from caujax.data import batches
    from caujax.data.examples import load_examples, texts
    from caujax.methods import METHODS

    examples = load_examples("generated", n, 0, method, METHODS[method].examples)
    if model_dir:
        return examples, transformers.AutoTokenizer.from_pretrained(model_dir)
    return examples, batches.train_tokenizer(texts(examples), tokenizer_vocab)


def _pretrained_config(model_dir):
    """The caujax ModelConfig of a Hugging Face checkpoint directory (for the FLOP counts)."""
    import transformers

    from caujax.models.hf_config import config_from_hf
    return config_from_hf(transformers.AutoConfig.from_pretrained(model_dir))


def _model(path, vocab: int):
    """Saves the shared random tiny Qwen2 (float32) to `path`; returns its ModelConfig (for the FLOP counts)."""
    import torch
    import transformers

    from caujax.models import ModelConfig
    from caujax.models.hf import config_to_hf

    cfg = ModelConfig.tiny("qwen2", vocab_size=vocab, embed_dim=256, num_layers=4, num_heads=4, num_kv_heads=2,
                           head_dim=64, mlp_dim=768, tie_embeddings=True)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config_to_hf(cfg)).save_pretrained(path)
    return cfg


def step_flops(method: str, cfg, main_BT, kl_BT=None, padded: bool = False) -> float:
    """Model FLOPs of one optimizer step (bench/machine.py), from the 0/1 attention masks of the rows the policy
    trains on (`main_BT`: SFT rows, DPO's chosen and rejected rows, KTO rows) and of KTO's mismatched KL rows:
      SFT  train(main)
      DPO  train(main) + forward(main)                          (the reference's log-probs)
      KTO  train(main) + forward(main) + 2 x forward(kl)        (reference on both, policy forward-only on KL)
    `padded`: count the padded shape instead (every position of the mask's [B, T] as a token, rows of length T)."""
    def shape(mask):
        mask = np.asarray(mask)
        if padded:
            return float(mask.size), float(mask.shape[-1])
        return float((mask > 0).sum()), machine.effective_seq_len(mask)

    flops = machine.train_flops(cfg, *shape(main_BT))
    if method in ("dpo", "kto"):
        flops += machine.forward_flops(cfg, *shape(main_BT))
    if method == "kto":
        flops += 2 * machine.forward_flops(cfg, *shape(kl_BT))
    return flops


def run_caujax(method, path, tokenizer, examples, batch, seq_len, steps, lr, precision, cfg, pad_multiple=0,
               packing=False, unrolled=False):
    import dataclasses
    import types

    import jax
    from flax import nnx

    from caujax.config import DataConfig, OptimConfig
    from caujax.data.examples import SourceContext
    from caujax.methods import METHODS
    from caujax.models import Decoder, load_pretrained
    from caujax.sharding import make_mesh
    from caujax.step import init_state, make_optimizer, make_train_step, place_batch

    spec = METHODS[method]
    model, _ = load_pretrained(path, dtype="float32")               # float32 parameters: the master weights
    graphdef, params = nnx.split(model)
    if precision == "bf16" or unrolled:    # as train.build_model: the graphdef carries the compute settings
        arch = model.cfg.replace(compute_dtype="bfloat16" if precision == "bf16" else model.cfg.compute_dtype,
                                 scan_layers=not unrolled)
        graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(arch, rngs=nnx.Rngs(0))))
    mesh = make_mesh(devices=jax.devices()[:1])
    tx = make_optimizer(OptimConfig(lr=lr, max_grad_norm=1.0), steps + 1)
    ref = jax.tree.map(lambda x: x.copy(), params) if spec.reference else None
    state, sharding = init_state(params, tx, mesh, seed=0)
    step_fn = make_train_step(functools.partial(spec.objective, params=spec.params()), tx, graphdef=graphdef,
                              state_sharding=sharding, mesh=mesh, reference=spec.reference,
                              global_fields=spec.global_fields, row_blocks=spec.row_blocks)
    # The method's own batch source, as train.py builds it (encode + collate); kl_group = micro-batch = the whole
    # batch, so KTO's mismatched pairs rotate within it, as TRL's within a per-device batch.
    widths = {"pad_multiple": pad_multiple} if "pad_multiple" in {f.name for f in dataclasses.fields(DataConfig)} \
        else {}
    if pad_multiple and not widths:
        raise SystemExit("--pad-multiple: this caujax's DataConfig has no pad_multiple")
    data_cfg = DataConfig(num_examples=len(examples), seed=0, seq_len=seq_len, batch_size=batch, packing=packing,
                          **widths)
    data = spec.batches(examples, tokenizer, SourceContext(types.SimpleNamespace(data=data_cfg), batch, mesh), None)
    out = {"times": [], "tokens": [], "losses": [], "flops": [], "padded_flops": [], "compiled": 0}
    for i in range(steps + 1):                # step 0 compiles
        b = data.next(None)
        programs = _cache_size(step_fn)
        t0 = time.perf_counter()
        state, metrics = step_fn(state, place_batch(b, mesh), ref)
        loss = float(metrics["loss"])         # waits for the step
        seconds = time.perf_counter() - t0
        out["losses"].append(loss)
        if i and _cache_size(step_fn) > programs:  # a new batch width compiled (pad_multiple > 0): not timed
            out["compiled"] += 1
        elif i:
            out["times"].append(seconds)
            out["tokens"].append(int((b["mask_BT"] > 0).sum()))
            kl = b.get("kl_mask_BT")
            out["flops"].append(step_flops(method, cfg, b["mask_BT"], kl))
            out["padded_flops"].append(step_flops(method, cfg, b["mask_BT"], kl, padded=True))
    if not np.isfinite(out["losses"]).all():
        raise FloatingPointError(f"caujax {method} {precision}: non-finite loss {out['losses']}")
    if not out["times"]:
        raise RuntimeError("every caujax step compiled a new batch width: raise --steps or set --pad-multiple 0")
    return out


def _cache_size(jitted) -> int:
    """Programs compiled so far by a jitted function (-1 where jax does not say)."""
    try:
        return jitted._cache_size()
    except AttributeError:
        return -1


def run_trl(method, path, tokenizer, examples, batch, seq_len, steps, lr, precision, cfg):
    import datasets
    import torch
    import transformers
    import trl

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    template = lambda p: tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                       add_generation_prompt=True)
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, max_steps=steps + 1,
                  learning_rate=lr, lr_scheduler_type="constant", max_grad_norm=1.0, logging_steps=1,
                  report_to=[], save_strategy="no", bf16=precision == "bf16", use_cpu=True,
                  gradient_checkpointing=False,
                  dataloader_num_workers=0, max_length=seq_len, seed=0, disable_tqdm=True)
    if method == "sft":
        rows = [{"prompt": template(e.prompt), "completion": e.completion} for e in examples]
        args, cls = trl.SFTConfig(**common, completion_only_loss=True), trl.SFTTrainer
    elif method == "dpo":
        rows = [{"prompt": template(e.prompt), "chosen": e.chosen, "rejected": e.rejected} for e in examples]
        args, cls = trl.DPOConfig(**common, beta=0.1), trl.DPOTrainer
    else:     # KTO: sequential sampling (KTOConfig's default) keeps the KL rotation within each batch
        rows = [{"prompt": template(e.prompt), "completion": e.completion, "label": e.label} for e in examples]
        args, cls = trl.KTOConfig(**common, beta=0.1), trl.KTOTrainer
    stamps, losses, batches = [], [], []

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, *_, **__):
            stamps.append(time.perf_counter())

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    trainer = cls(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer,
                  callbacks=[Clock()])
    collate = trainer.data_collator
    trainer.data_collator = lambda feats: _keep(collate(feats), batches)
    trainer.train()
    stamps.append(time.perf_counter())
    batches = batches[1:steps + 1]         # the warm-up step's batch is not timed
    return {"times": list(np.diff(stamps)[1:]), "losses": losses,
            "tokens": [int(m.sum()) for m, _ in batches],
            "flops": [step_flops(method, cfg, m, kl) for m, kl in batches],
            "padded_flops": [step_flops(method, cfg, m, kl, padded=True) for m, kl in batches]}


def _keep(batch, kept):
    """Records the attention masks of a collated batch (rows trained on, and KTO's KL rows)."""
    kl = batch.get("KL_attention_mask")
    kept.append((batch["attention_mask"].numpy(), None if kl is None else kl.numpy()))
    return batch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=("sft", "dpo", "kto"), default="sft")
    ap.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                    help="bf16: float32 master weights, bfloat16 compute on both sides")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--model", default=None, metavar="HF_DIR",
                    help="a Hugging Face checkpoint directory (float32 weights) and its tokenizer instead of the "
                         "tiny random Qwen2, e.g. Gemma-3-270M as the demo's base stage converts it")
    ap.add_argument("--repeats", type=int, default=2, help="alternating caujax/TRL runs; medians over all")
    ap.add_argument("--pad-multiple", type=int, default=128,
                    help="caujax data.pad_multiple: N (default 128, caujax's own default) pads each batch to its "
                         "longest row rounded up to N (steps that compile a new width are not timed); 0 pads every "
                         "batch to --seq-len, one compiled shape")
    ap.add_argument("--packing", action="store_true",
                    help="caujax data.packing (SFT): several examples per row of --seq-len; --batch counts packed rows")
    ap.add_argument("--unrolled", action="store_true",
                    help="caujax model.scan_layers=False: the Python loop over the layers instead of lax.scan")
    args = ap.parse_args(argv)
    if args.packing and args.method != "sft":
        ap.error("--packing applies to --method sft")
    if args.method == "kto" and args.batch < 2:
        ap.error("KTO needs --batch >= 2 (its KL term rotates completions within a batch)")

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    machine.describe()
    examples, tokenizer = _texts(args.method, args.examples, 1024, args.model)
    keys = ("times", "tokens", "losses", "flops", "padded_flops")
    results = {"caujax": {k: [] for k in keys}, "trl": {k: [] for k in keys}}
    compiled = 0
    rss = {"caujax": 0.0, "trl": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _pretrained_config(args.model) if args.model else _model(tmp, len(tokenizer))
        path = args.model or tmp
        # Whole runs alternate (caujax, TRL, caujax, TRL, ...), so load on the machine hits both alike.
        for _ in range(args.repeats):
            for name, run in (("caujax", run_caujax), ("trl", run_trl)):
                machine.reset_peak_rss()
                extra = {"pad_multiple": args.pad_multiple, "packing": args.packing,
                         "unrolled": args.unrolled} if name == "caujax" else {}
                try:
                    out = run(args.method, path, tokenizer, examples, args.batch, args.seq_len, args.steps, 1e-5,
                              args.precision, cfg, **extra)
                except Exception:
                    traceback.print_exc()
                    print(f"\nFAILED: {name}'s {args.method} step at --precision {args.precision} raised the error "
                          f"above; no comparison.", file=sys.stderr, flush=True)
                    sys.exit(2)
                rss[name] = max(rss[name], machine.peak_rss_gb())
                compiled += out.get("compiled", 0)
                for k in keys:
                    results[name][k].extend(out[k])
    unit = {"dpo": "pairs", "kto": "rows + as many KL rows"}.get(args.method, "rows")
    print(f"\n{args.method}: batch {args.batch} ({unit}), seq_len {args.seq_len}, {args.repeats} alternating runs x "
          f"{args.steps} timed steps after one warm-up step, {args.precision} on {_device()}; caujax "
          + (f"pads each batch to its longest row rounded up to {args.pad_multiple} ({compiled} steps that compiled "
             f"a new width not timed)" if args.pad_multiple else "pads every row to seq_len")
          + (", packs several examples per row (data.packing)" if args.packing else "")
          + (", unrolled layers (model.scan_layers=False)" if args.unrolled else ""))
    env = " ".join(f"{k}={v}" for k, v in machine.malloc_env().items()) or "glibc defaults"
    print(f"glibc malloc environment (both sides): {env}\n")
    dtype = "bfloat16" if args.precision == "bf16" else "float32"
    libs = {"caujax": "xla", "trl": "torch"}
    print("| framework | first loss | median s/step | real tokens/step | real tokens/s | model GFLOP/step | GFLOP/s | "
          "% of ceiling | padded GFLOP/s | peak RSS GB |\n|---|---|---|---|---|---|---|---|---|---|")
    rate = {}
    for name, r in results.items():
        med = statistics.median(r["times"])
        ceiling = machine.ceiling(libs[name], dtype)
        gflops, pct = machine.achieved(statistics.mean(r["flops"]), med, ceiling)
        padded, _ = machine.achieved(statistics.mean(r["padded_flops"]), med, ceiling)
        rate[name] = statistics.mean(r["tokens"]) / med
        print(f"| {name} | {r['losses'][0]:.4f} | {med:.3f} | {statistics.mean(r['tokens']):.0f} | {rate[name]:.0f} | "
              f"{statistics.mean(r['flops']) / 1e9:.2f} | {gflops:.1f} | {pct:.1f}% of {libs[name]}_{dtype} "
              f"{ceiling:.1f} | {padded:.1f} | {rss[name]:.2f} |")
    print(f"\nratio caujax / TRL (real tokens/s): {rate['caujax'] / rate['trl']:.2f}x")
    print(f"peak RSS of the process (after machine.describe): {max(rss.values()):.2f} GB; per side = the peak "
          f"during its own runs (one process: what the other side left allocated counts too)")


def _device() -> str:
    import jax
    return f"{jax.devices()[0].platform} ({jax.device_count()} device)"


if __name__ == "__main__":
    main()
