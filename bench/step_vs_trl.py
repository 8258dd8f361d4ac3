"""Training-step throughput: caujax's jitted SFT/DPO step vs TRL's SFTTrainer/DPOTrainer on the same weights, the
same generated causal problems and the same tokenizer, float32, AdamW, no gradient checkpointing on either side.
Reports the median seconds per optimizer step (compile excluded) and real (non-pad) tokens per second; caujax pads
every row to --seq-len (one compiled shape), TRL pads to the longest row of each batch.

    python -m bench.step_vs_trl --method sft --batch 8 --seq-len 512 --steps 6
    python -m bench.step_vs_trl --method dpo --batch 4 --seq-len 512 --steps 6
"""
from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import numpy as np


def _texts(method: str, n: int, tokenizer_vocab: int):
    """(examples, tokenizer): generated problems as SFT examples or DPO pairs, and a SentencePiece tokenizer."""
    from caujax.data import batches
    from caujax.data.examples import load_examples, texts
    from caujax.methods import METHODS

    examples = load_examples("generated", n, 0, method, METHODS[method].examples)
    return examples, batches.train_tokenizer(texts(examples), tokenizer_vocab)


def _model(path, vocab: int):
    import torch
    import transformers

    from caujax.models import ModelConfig
    from caujax.models.hf import config_to_hf

    cfg = ModelConfig.tiny("qwen2", vocab_size=vocab, embed_dim=256, num_layers=4, num_heads=4, num_kv_heads=2,
                           head_dim=64, mlp_dim=768, tie_embeddings=True)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config_to_hf(cfg)).save_pretrained(path)


def run_caujax(method, path, tokenizer, examples, batch, seq_len, steps, lr):
    import jax
    from flax import nnx

    from caujax.config import OptimConfig
    from caujax.data import batches
    from caujax.data import examples as ex
    from caujax.losses import dpo, sft
    from caujax.methods import METHODS
    from caujax.models import load_pretrained
    from caujax.sharding import make_mesh
    from caujax.step import init_state, make_optimizer, make_train_step, place_batch

    spec = METHODS[method]
    rows = getattr(ex, f"encode_{method}")(tokenizer, examples)
    collate = getattr(ex, f"collate_{method}")
    model, _ = load_pretrained(path)
    graphdef, params = nnx.split(model)
    mesh = make_mesh(devices=jax.devices()[:1])
    tx = make_optimizer(OptimConfig(lr=lr, max_grad_norm=1.0), steps + 1)
    ref = jax.tree.map(lambda x: x.copy(), params) if spec.reference else None
    state, sharding = init_state(params, tx, mesh, seed=0)
    loss_params = sft.SFTParams() if method == "sft" else dpo.DPOParams()
    step_fn = make_train_step(functools.partial(spec.objective, params=loss_params), tx, graphdef=graphdef,
                              state_sharding=sharding, mesh=mesh, reference=spec.reference,
                              row_blocks=spec.row_blocks)
    data = batches.Batches(rows, batch, 0, lambda r: collate(r, seq_len, tokenizer.pad_token_id, batch))
    times, tokens, losses = [], [], []
    for i in range(steps + 1):                # step 0 compiles
        b = next(data)
        t0 = time.perf_counter()
        state, metrics = step_fn(state, place_batch(b, mesh), ref)
        losses.append(float(metrics["loss"]))
        if i:
            times.append(time.perf_counter() - t0)
            tokens.append(int(b["mask_BT"].sum()))
    return times, tokens, losses


def run_trl(method, path, tokenizer, examples, batch, seq_len, steps, lr):
    import datasets
    import torch
    import transformers
    import trl

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    template = lambda p: tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                       add_generation_prompt=True)
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, max_steps=steps + 1,
                  learning_rate=lr, lr_scheduler_type="constant", max_grad_norm=1.0, logging_steps=1,
                  report_to=[], save_strategy="no", bf16=False, use_cpu=True, gradient_checkpointing=False,
                  dataloader_num_workers=0, max_length=seq_len, seed=0, disable_tqdm=True)
    if method == "sft":
        rows = [{"prompt": template(e.prompt), "completion": e.completion} for e in examples]
        args, cls = trl.SFTConfig(**common, completion_only_loss=True), trl.SFTTrainer
    else:
        rows = [{"prompt": template(e.prompt), "chosen": e.chosen, "rejected": e.rejected} for e in examples]
        args, cls = trl.DPOConfig(**common, beta=0.1), trl.DPOTrainer
    stamps, tokens, losses = [], [], []

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, *_, **__):
            stamps.append(time.perf_counter())

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    trainer = cls(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer,
                  callbacks=[Clock()])
    collate = trainer.data_collator
    trainer.data_collator = lambda feats: _count(collate(feats), tokens)
    trainer.train()
    stamps.append(time.perf_counter())
    return list(np.diff(stamps)[1:]), tokens[1:], losses


def _count(batch, tokens):
    tokens.append(int(batch["attention_mask"].sum()))
    return batch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=("sft", "dpo"), default="sft")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="alternating caujax/TRL runs; medians over all")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    examples, tokenizer = _texts(args.method, args.examples, 1024)
    results = {"caujax": ([], [], []), "trl": ([], [], [])}
    with tempfile.TemporaryDirectory() as tmp:
        _model(tmp, len(tokenizer))
        # Whole runs alternate (caujax, TRL, caujax, TRL, ...), so load on the machine hits both alike.
        for _ in range(args.repeats):
            for name, run in (("caujax", run_caujax), ("trl", run_trl)):
                out = run(args.method, tmp, tokenizer, examples, args.batch, args.seq_len, args.steps, 1e-5)
                for acc, new in zip(results[name], out):
                    acc.extend(new)
    print(f"\n{args.method}: batch {args.batch} ({'pairs' if args.method == 'dpo' else 'rows'}), seq_len "
          f"{args.seq_len}, {args.repeats} alternating runs x {args.steps} timed steps after one warm-up step, "
          f"float32 on {_device()}\n")
    print("| framework | first loss | median s/step | real tokens/step | real tokens/s |\n|---|---|---|---|---|")
    for name, (times, tokens, losses) in results.items():
        med = statistics.median(times)
        print(f"| {name} | {losses[0]:.4f} | {med:.3f} | {statistics.mean(tokens):.0f} | "
              f"{statistics.mean(tokens) / med:.0f} |")
    rate = {name: statistics.mean(r[1]) / statistics.median(r[0]) for name, r in results.items()}
    print(f"\nratio caujax / TRL (real tokens/s): {rate['caujax'] / rate['trl']:.2f}x")


def _device() -> str:
    import jax
    return f"{jax.devices()[0].platform} ({jax.device_count()} device)"


if __name__ == "__main__":
    main()
