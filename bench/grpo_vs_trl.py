"""One GRPO iteration: caujax (RolloutSource + jitted step, as train.py runs them) vs TRL's GRPOTrainer, on the same
tiny Qwen2 weights, tokenizer, copy-task prompts, reward (rl.rewards.copy_reward), group size, lengths and optimizer.

An iteration = a rollout (G sampled completions for each of P prompts at temperature 1, rewards, advantages) and
one AdamW update on those P x G completions: beta 0, num_iterations 1 (on-policy, no old or reference log-probs on
either side), float32, no gradient checkpointing. Every completion is max_completion_length tokens on both sides
(EOS never ends one: TRL gets min_new_tokens, caujax's sampler no EOS ids) unless --allow-eos; the table reports
the mean completion length of each side either way. Each side runs in its own subprocess (a clean peak RSS, no
shared thread pools), the runs alternating (caujax, TRL, caujax, ...); the first iteration of every run compiles /
warms up and is not timed; medians over all timed iterations. A random model scores 0 on the copy reward, so the
advantages and gradients are 0: both sides still run the whole forward, backward and AdamW update.

    python -m bench.grpo_vs_trl --prompts 4 --group 8 --completion-len 64 --iterations 4 --repeats 2
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

LR = 1e-5
REPO = pathlib.Path(__file__).resolve().parent.parent


def _examples(n: int):
    from caujax.data.examples import load_examples
    from caujax.methods import METHODS

    return load_examples("copy", n, 0, "grpo", METHODS["grpo"].examples)


def _prepare(workdir: pathlib.Path, n: int) -> str:
    """The shared HF model dir (random tiny Qwen2) and tokenizer dir; returns the model's name for the table. The
    tokenizer is a SentencePiece trained on the copy prompts and on generated problems (for a 1024-piece vocab)."""
    import torch
    import transformers

    from caujax.data import batches
    from caujax.data.examples import load_examples, texts
    from caujax.methods import METHODS
    from caujax.models import ModelConfig
    from caujax.models.hf import config_to_hf

    extra = load_examples("generated", 64, 0, "grpo", METHODS["grpo"].examples)
    tokenizer = batches.train_tokenizer(texts(_examples(n)) + texts(extra), 1024)
    tokenizer.save_pretrained(workdir / "tokenizer")
    cfg = ModelConfig.tiny("qwen2", vocab_size=len(tokenizer), embed_dim=256, num_layers=4, num_heads=4,
                           num_kv_heads=2, head_dim=64, mlp_dim=768, tie_embeddings=True)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config_to_hf(cfg)).save_pretrained(workdir / "model")
    return f"tiny Qwen2 (4 layers, d=256, vocab {len(tokenizer)})"


def run_caujax(workdir: pathlib.Path, a) -> dict:
    import jax
    import transformers

    from caujax import methods
    from caujax.config import DataConfig, ModelSource, OptimConfig, load_preset
    from caujax.data.examples import SourceContext
    from caujax.losses.params import GRPOParams, RolloutParams
    from caujax.sharding import make_mesh
    from caujax.step import Policy, init_state, make_optimizer, make_train_step, place_batch
    from caujax.train import build_model

    B, steps = a.prompts * a.group, a.iterations + 1
    rollout = RolloutParams(n=a.group, temperature=1.0, max_prompt_length=a.prompt_len,
                            max_completion_length=a.completion_len, rewards=("copy",), log_every=0, stuck_rollouts=0)
    cfg = dataclasses.replace(
        load_preset(REPO / "configs" / "tiny_grpo.py"),
        model=ModelSource(path=str(workdir / "model"), tokenizer=str(workdir / "tokenizer"), param_dtype="float32",
                          compute_dtype="float32"),
        steps=steps, run_dir=str(workdir / "caujax-run"),
        data=DataConfig(source="copy", num_examples=a.examples, batch_size=B, micro_batch_size=B),
        optim=OptimConfig(lr=LR, schedule="constant", max_grad_norm=1.0),
        grpo=GRPOParams(rollout=rollout, beta=0.0, num_iterations=1))
    method = methods.get("grpo")
    mesh = make_mesh(1, 1, 1)
    tokenizer = transformers.AutoTokenizer.from_pretrained(workdir / "tokenizer")
    graphdef, params, tokenizer = build_model(cfg, mesh, tokenizer)
    tx = make_optimizer(cfg.optim, cfg.steps)
    state, sharding = init_state(params, tx, mesh, cfg.seed)
    del params
    data = method.batches(_examples(a.examples), tokenizer, SourceContext(cfg, B, mesh, None), None)
    if not a.allow_eos:
        data.eos_ids = ()                  # every completion runs to max_completion_length, as TRL's min_new_tokens
    step_fn = make_train_step(functools.partial(method.objective, params=cfg.grpo), tx, graphdef=graphdef,
                              state_sharding=sharding, mesh=mesh)
    out = {"rollout": [], "update": [], "length": []}
    for i in range(steps):
        t0 = time.perf_counter()
        batch = data.next(Policy(graphdef, state))
        t1 = time.perf_counter()
        state, metrics = step_fn(state, place_batch(batch, mesh), None)
        jax.block_until_ready((state, metrics))
        t2 = time.perf_counter()
        length = data.metrics()["completion_length"]
        if i:                                   # iteration 0 compiles the sampler and the step
            out["rollout"].append(t1 - t0)
            out["update"].append(t2 - t1)
            out["length"].append(length)
    return out


def run_trl(workdir: pathlib.Path, a) -> dict:
    import datasets
    import torch
    import transformers
    import trl

    from caujax.data import batches
    from caujax.rl.rewards import copy_reward

    examples = _examples(a.examples)
    tokenizer = transformers.AutoTokenizer.from_pretrained(workdir / "tokenizer")
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": e.prompt}], tokenize=False,
                                           add_generation_prompt=True) for e in examples]
    # TRL tokenizes a plain-text prompt with the tokenizer's defaults: the same ids as caujax's chat-template path.
    ours = [p for p, _ in batches.encode(tokenizer, [e.prompt for e in examples], [""] * len(examples))]
    if tokenizer(texts)["input_ids"] != ours:
        raise SystemExit("TRL would see other prompt token ids than caujax")

    def copy(prompts, completions, idx, **_):           # TRL's reward signature around caujax's reward function
        return copy_reward(prompts, completions, [examples[i].item for i in idx])

    B, steps = a.prompts * a.group, a.iterations + 1
    gen_kwargs = None if a.allow_eos else {"min_new_tokens": a.completion_len}
    args = trl.GRPOConfig(output_dir=str(workdir / "trl-run"), per_device_train_batch_size=B, num_generations=a.group,
                          gradient_accumulation_steps=1, max_completion_length=a.completion_len, temperature=1.0,
                          beta=0.0, num_iterations=1, learning_rate=LR, lr_scheduler_type="constant",
                          max_grad_norm=1.0, weight_decay=0.0, use_vllm=False, bf16=False,
                          gradient_checkpointing=False, logging_steps=1, report_to=[], save_strategy="no",
                          max_steps=steps, use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True,
                          generation_kwargs=gen_kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(workdir / "model", dtype=torch.float32)
    dataset = datasets.Dataset.from_list([{"prompt": t, "idx": i} for i, t in enumerate(texts)])
    begin, step, gen, length = [], [], [], []

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, *_, **__):
            begin.append(time.perf_counter())

        def on_step_end(self, *_, **__):
            step.append(time.perf_counter() - begin[-1])

    trainer = trl.GRPOTrainer(model=model, args=args, reward_funcs=copy, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[Clock()])
    generate = trainer._generate_and_score_completions

    def timed(inputs):                  # generation + rewards + advantages: TRL's side of the rollout
        t0 = time.perf_counter()
        output = generate(inputs)
        gen.append(time.perf_counter() - t0)
        length.append(float(output["completion_mask"].sum(1).float().mean()))
        return output

    trainer._generate_and_score_completions = timed
    trainer.train()
    if len(gen) != steps or len(step) != steps:
        raise SystemExit(f"TRL generated {len(gen)} times in {len(step)} steps; expected one each in {steps}")
    return {"rollout": gen[1:], "update": [s - g for s, g in zip(step[1:], gen[1:])], "length": length[1:]}


def _child(a) -> None:
    workdir = pathlib.Path(a.workdir)
    out = (run_caujax if a.side == "caujax" else run_trl)(workdir, a)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux: KiB
    print("RESULT " + json.dumps(out), flush=True)


def _spawn(side: str, workdir: str, argv: list[str]) -> dict:
    cmd = [sys.executable, "-m", "bench.grpo_vs_trl", "--side", side, "--workdir", workdir, *argv]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"the {side} run failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4, help="P, prompts per iteration")
    ap.add_argument("--group", type=int, default=8, help="G, completions per prompt")
    ap.add_argument("--prompt-len", type=int, default=32, help="max_prompt_length (copy prompts are 17 tokens)")
    ap.add_argument("--completion-len", type=int, default=64, help="max_completion_length")
    ap.add_argument("--iterations", type=int, default=4, help="timed iterations per run, after one warm-up")
    ap.add_argument("--repeats", type=int, default=2, help="alternating caujax/TRL runs; medians over all")
    ap.add_argument("--examples", type=int, default=64, help="copy-task prompts to draw from")
    ap.add_argument("--allow-eos", action="store_true", help="let an EOS end a completion (lengths then differ)")
    ap.add_argument("--side", choices=("caujax", "trl"), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.side:
        return _child(a)

    child_argv = [f"--prompts={a.prompts}", f"--group={a.group}", f"--prompt-len={a.prompt_len}",
                  f"--completion-len={a.completion_len}", f"--iterations={a.iterations}", f"--examples={a.examples}",
                  *(["--allow-eos"] if a.allow_eos else [])]
    runs = {"caujax": [], "trl": []}
    with tempfile.TemporaryDirectory(prefix="grpo-bench-") as tmp:
        name = _prepare(pathlib.Path(tmp), a.examples)
        for r in range(a.repeats):              # whole runs alternate, so machine load hits both alike
            for side in runs:
                runs[side].append(_spawn(side, tmp, child_argv))
                print(f"run {r + 1}/{a.repeats} {side}: " + ", ".join(
                    f"{k} {statistics.median(v):.3f}" for k, v in runs[side][-1].items() if isinstance(v, list)),
                    file=sys.stderr, flush=True)
    med = {}
    for side, rs in runs.items():
        total = [ro + up for run in rs for ro, up in zip(run["rollout"], run["update"])]
        med[side] = dict(total=statistics.median(total),
                         rollout=statistics.median([x for run in rs for x in run["rollout"]]),
                         update=statistics.median([x for run in rs for x in run["update"]]),
                         length=statistics.mean([x for run in rs for x in run["length"]]),
                         rss=max(run["peak_rss_mb"] for run in rs))
    c, t = med["caujax"], med["trl"]
    print(f"\nGRPO iteration: {a.prompts} prompts x G={a.group}, prompt <= {a.prompt_len}, completions <= "
          f"{a.completion_len} tokens ({'EOS allowed' if a.allow_eos else 'no EOS: every completion full length'}), "
          f"temperature 1, beta 0, float32 on CPU; {a.repeats} alternating runs x {a.iterations} timed iterations "
          f"after one warm-up each; medians (s); peak RSS of each side's process (runtime imports included)\n")
    print("| model | P x G | completion tokens (caujax / TRL) | caujax s/iter (rollout + update) | "
          "TRL s/iter (generation + training) | ratio TRL/caujax | peak RSS caujax / TRL |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {name} | {a.prompts} x {a.group} | {c['length']:.1f} / {t['length']:.1f} | "
          f"{c['total']:.3f} ({c['rollout']:.3f} + {c['update']:.3f}) | "
          f"{t['total']:.3f} ({t['rollout']:.3f} + {t['update']:.3f}) | **{t['total'] / c['total']:.2f}x** | "
          f"{c['rss']:.0f} MB / {t['rss']:.0f} MB |")


if __name__ == "__main__":
    main()
