"""Post-train a model: python -m caujax.train --config PRESET [--method M] [--resume] [--key=value ...]

  python -m caujax.train --config configs/tiny.py --method sft --run_dir=runs/tiny     # 2 steps, CPU, no network
  python -m caujax.train --config configs/tiny.py --run_dir=runs/tiny --steps=4 --resume   # continue it to step 4
  python -m caujax.train --config configs/tiny.py --help          # every config key with this preset's value

A run writes <run_dir>/config.json, metrics.jsonl, checkpoints/, loss.png and hf/ (the trained model as a Hugging
Face directory) and ends with a summary of where they went. --resume continues from the newest intact checkpoint
(damaged ones are set aside with a warning); a run whose method, data, optimizer, model or loss settings differ
from the checkpoint's is refused, naming the fields.

`train` reads top to bottom: config, mesh, text and tokenizer, model, optimizer, checkpoint restore, data, step,
loop. It names no method: what differs between methods is their row in caujax/methods.py.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import caujax
from caujax import checkpoint, methods, train_cli
from caujax import resume as resume_lib
from caujax.config import RunConfig, to_json_dict
from caujax.data import batches
from caujax.data.batches import RowShare
from caujax.distributed import initialize_from_env
from caujax.data.examples import SourceContext, load_examples, texts
from caujax.export import EXPORT_MARKER, check_peft_export, export, export_dir, exported_step
from caujax.metrics_log import MetricsLog
from caujax.models import Decoder, load_pretrained, lora
from caujax.models.layout import is_matrix
from caujax.resume import say
from caujax.run_report import plot_loss, summary
from caujax.sharding import batch_ways, make_mesh, row_share, sum_over_processes, tree_shardings
from caujax.step import (Policy, init_state, learning_rate, make_optimizer, make_train_step, place_batch,
                         reference_table)


def load_tokenizer(cfg: RunConfig, run_dir: pathlib.Path, examples):
    """(tokenizer or None, trained here?): --model.tokenizer; None for a checkpoint's own (build_model reads it);
    else the run's SentencePiece model, trained on the run's text once and read back from <run_dir>/tokenizer."""
    import transformers

    if cfg.model.tokenizer:
        return transformers.AutoTokenizer.from_pretrained(cfg.model.tokenizer), False
    if cfg.model.path:
        return None, False
    if (run_dir / "tokenizer").is_dir():
        return transformers.AutoTokenizer.from_pretrained(run_dir / "tokenizer"), False
    return batches.train_tokenizer(texts(examples), cfg.model.arch.vocab_size), True


def build_model(cfg: RunConfig, mesh, tokenizer):
    """(graphdef, params, tokenizer): parameters placed in their shardings as they are made, never whole on one
    host; the graphdef carries the compute dtype and the remat flag (nothing a checkpoint stores)."""
    src = cfg.model
    if src.path:
        model, own_tokenizer = load_pretrained(src.path, dtype=src.param_dtype, mesh=mesh)
        arch, params, tokenizer = model.cfg, nnx.state(model), tokenizer or own_tokenizer
        if tokenizer is None:
            raise ValueError(f"{src.path} holds no tokenizer; set --model.tokenizer to a tokenizer directory")
    else:
        arch = src.arch.replace(param_dtype=src.param_dtype, bos_token_id=tokenizer.bos_token_id,
                                eos_token_ids=(tokenizer.eos_token_id,), pad_token_id=tokenizer.pad_token_id)
        make = lambda: nnx.state(Decoder(arch, rngs=nnx.Rngs(src.init_seed)))
        params = jax.jit(make, out_shardings=tree_shardings(jax.eval_shape(make), mesh))()
    if len(tokenizer) > arch.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's "
                         f"vocab_size={arch.vocab_size}")
    arch = src.run_arch(arch)
    if arch.lora is not None:       # fresh adapters (B = 0) around the frozen base, made in their shardings
        make = lambda: nnx.state(Decoder(arch, rngs=nnx.Rngs(src.init_seed)), nnx.LoRAParam)
        adapters = jax.jit(make, out_shardings=tree_shardings(jax.eval_shape(make), mesh))()
        params = lora.join(adapters, params)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(arch, rngs=nnx.Rngs(0))))
    return graphdef, params, tokenizer


def _fingerprint(cfg: RunConfig, rows) -> str:
    """What the reference log-probs depend on: the model (the bytes of its checkpoint files, or the random-init
    recipe) and the batches (token ids, batch size, seq_len, seed, steps). Content, not file times: every host of a
    multi-host run, and a copy of the checkpoint elsewhere, gets the same name."""
    h = hashlib.sha256(json.dumps([to_json_dict(cfg.model), to_json_dict(cfg.data), cfg.steps], default=str).encode())
    if cfg.model.path:
        path = pathlib.Path(cfg.model.path)
        files = [path] if path.is_file() else sorted([*path.glob("*.safetensors"), *path.glob("config.json")])
        for f in files:
            with open(f, "rb") as fh:
                h.update(f"{f.name}:{f.stat().st_size}:{hashlib.file_digest(fh, 'sha256').hexdigest()}".encode())
    h.update(repr(rows).encode())
    return h.hexdigest()[:20]


def train(cfg: RunConfig, resume: bool = False) -> list[dict]:
    """Run `cfg`; returns the metrics lines this call wrote. Ends with a summary on stdout (summary below)."""
    t_begin = time.perf_counter()
    run_dir = pathlib.Path(cfg.run_dir)
    method = methods.get(cfg.method)
    config_json = to_json_dict(cfg)
    # Where the run starts (caujax/resume.py), decided before any model is built: a fresh run into a run_dir with
    # checkpoints, a resume under other same-run settings, or one with no intact checkpoint is refused here.
    res = resume_lib.plan(cfg, config_json, resume)
    latest = res.latest
    # A finished run whose export is missing or older (killed before or during it) goes on to export.
    if latest is not None and latest >= cfg.steps and (not cfg.export or exported_step(cfg) == latest):
        damaged = f"; left as they are: {', '.join(f'step {k} ({v})' for k, v in res.damaged.items())}" \
            if res.damaged else ""
        say(f"{run_dir} is already at step {latest} of steps={cfg.steps}: nothing to train (raise --steps to "
            f"continue it){damaged}")
        res.manager.close()
        return []

    # Mesh: batch rows over data x fsdp, weights over fsdp x tensor.
    mesh = make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)
    ways, M = batch_ways(mesh), cfg.data.num_micro_batches
    if cfg.data.batch_size % ways:
        raise ValueError(f"data.batch_size={cfg.data.batch_size} is not a multiple of mesh data x fsdp = {ways}")
    micro = cfg.data.batch_size // M
    if micro < method.min_micro_batch:
        raise ValueError(f"{cfg.method} needs at least {method.min_micro_batch} rows per micro-batch (see "
                         f"caujax/methods.py), got data.micro_batch_size={micro}")

    if cfg.model.lora.rank and cfg.model.lora.export == "peft" and cfg.export:
        check_peft_export(cfg)

    # Text and tokenizer before the model: a random-init run trains its tokenizer on this text, and bad rows must
    # fail before anything is written.
    examples = load_examples(cfg.data.source, cfg.data.num_examples, cfg.data.seed, cfg.method, method.examples)
    tokenizer, tokenizer_is_new = load_tokenizer(cfg, run_dir, examples)
    if method.validate and tokenizer is not None:      # else right after the checkpoint's own tokenizer loads
        method.validate(cfg, examples, tokenizer)

    # Model: π_θ, and when the method has a reference, the frozen π_ref = π_θ at step 0 (a copy: the train state's
    # buffers are donated). π_ref's matrices only ever enter matmuls cast to the compute dtype, so they are stored
    # in it (half the memory in bf16, the same log-probs); norm scales and biases keep their dtype.
    validated = tokenizer is not None
    graphdef, params, tokenizer = build_model(cfg, mesh, tokenizer)
    if method.validate and not validated:
        method.validate(cfg, examples, tokenizer)
    if tokenizer.chat_template is None:
        raise ValueError("the tokenizer has no chat template; set --model.tokenizer to a directory that has one")
    section = getattr(cfg, cfg.method)
    compute = jnp.dtype(cfg.model.compute_dtype)
    # With LoRA, π_ref is the policy with its adapters off (lora.adapter_off): no copy; `ref` then carries None for
    # its params and whoever scores with it takes the current policy's.
    adapters = cfg.model.lora.rank > 0
    ref_params = jax.tree_util.tree_map_with_path(
        lambda path, p: p.astype(compute) if is_matrix(path) else jnp.copy(p),
        params) if method.uses_reference(section) and not adapters else None
    # π_ref is a decoder; the trained module may be more (PPO's value head or critic), built around the decoder.
    ref = (graphdef, ref_params) if ref_params is not None or (adapters and method.uses_reference(section)) else None
    if method.wrap is not None:
        graphdef, params = method.wrap(graphdef, params, section)

    # Data: the method's batch source, built before anything is written so that bad input (a prompt longer than
    # the cache, a schedule that splits a rollout) fails first; restarted from the checkpoint's position below. A
    # method without an in-step reference pass gets π_ref here (PPO's KL penalty goes into its rewards).
    in_step = method.reference is not None and ref is not None
    data = method.batches(examples, tokenizer, SourceContext(cfg, micro, mesh, None if in_step else ref,
                                                             row_share(mesh)), None)
    if not in_step:
        ref_params = None                         # the step takes none (the rollout holds its own reference)
    if jax.process_count() > 1:       # each process says which part of every batch it builds (per-host data)
        share = getattr(data, "share", RowShare())
        part = (f"part {share.index + 1} of {share.count} of each batch's rows" if share.count > 1 else
                "every row of each batch")
        print(f"caujax.train: process {jax.process_index()} of {jax.process_count()} builds {part}",
              file=sys.stderr, flush=True)

    tx = make_optimizer(cfg.optim, cfg.steps)
    lr = learning_rate(cfg.optim, cfg.steps)
    state, state_sharding = init_state(params, tx, mesh, cfg.seed)
    del params

    # Train state, first match wins (big_vision's precedence, spelled out):
    #  1. --resume and an intact checkpoint in <run_dir>/checkpoints: the newest one that reads back whole (params,
    #     moments, step, RNG, data position); damaged newer ones are set aside with a warning (caujax/resume.py);
    #  2. otherwise step 0 from the model above (a fresh run was refused above if run_dir holds checkpoints).
    position = None
    if latest is not None:            # found and checked above; a fresh run into it was refused
        state, position = _restore(res, state, state_sharding, config_json)
    res.set_aside()                   # before anything is written: orbax must not see a damaged step again
    manager = res.manager
    start = int(jax.device_get(state.step))
    if res.step is not None:
        say(f"resuming {run_dir} from its checkpoint at step {start}: " + (
            f"steps {start + 1}..{cfg.steps} to go" if start < cfg.steps else
            f"all {cfg.steps} steps are done; writing the missing or older export"))

    # The data continue from the checkpoint's position (fixed data: the same shuffled order on every (re)start;
    # rollouts: the same prompts and sampling keys).
    if position is not None:
        data = data.restart(position)
    table = None
    if in_step and cfg.reference.mode == "cached":
        if not data.fixed:
            raise ValueError(f"reference.mode=cached needs batches fixed before the run; {cfg.method} samples its "
                             f"batches from the policy: use reference.mode=step")
        cache = pathlib.Path(cfg.reference.cache_dir or run_dir / "reference")
        table = reference_table(cache / f"{cfg.method}-{_fingerprint(cfg, data.rows)}.npz",
                                functools.partial(method.reference, params=section), graphdef,
                                lora.adapter_off(state.params) if adapters else ref_params, mesh,
                                data.restart(None), cfg.steps,
                                num_micro_batches=M, row_blocks=method.row_blocks)
        ref_params = None                         # its memory goes back to the policy

    step_fn = make_train_step(functools.partial(method.objective, params=section), tx,
                              graphdef=graphdef, state_sharding=state_sharding, mesh=mesh, num_micro_batches=M,
                              reference=functools.partial(method.reference, params=section)
                              if in_step and table is None else None,
                              global_fields=method.global_fields, row_blocks=method.row_blocks,
                              reference_is_base=adapters)

    # Run-level files: process 0 writes them; every process holds what it needs in memory (the tokenizer is trained
    # deterministically on the same text by each).
    if jax.process_index() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config_json, indent=2, default=str))
        if tokenizer_is_new:
            tokenizer.save_pretrained(run_dir / "tokenizer")
    try:
        state, lines = _loop(cfg, step_fn, graphdef, state, ref_params, data, table, lr, mesh, manager, start,
                             config_json)
    finally:     # a run that fails (a raising reward, a stuck rollout, NaN) still lands its last async checkpoint
        manager.wait_until_finished()
        manager.close()
    if jax.process_index() == 0:
        plot_loss(run_dir)
    if cfg.export:
        model = nnx.merge(graphdef, state.params)
        model = method.policy(model) if method.policy else model
        marker = {EXPORT_MARKER: json.dumps({"step": int(jax.device_get(state.step))})}
        if adapters and cfg.model.lora.export == "peft":
            from caujax.models.peft_export import save_adapter
            save_adapter(model, export_dir(cfg), base=cfg.model.path, extra_files=marker)
        else:
            export(lora.merge_adapters(model) if adapters else model, tokenizer, export_dir(cfg),
                   texts(examples[:1])[0], marker)
    if jax.process_index() == 0:
        print(summary(cfg, start, lines, time.perf_counter() - t_begin, export_dir(cfg) if cfg.export else None),
              flush=True)
    return lines


def _loop(cfg, step_fn, graphdef, state, ref_params, data, table, lr, mesh, manager, start, config_json):
    """One jitted step per batch, metrics every log_every steps (metrics.jsonl, and TensorBoard when a writer
    imports), checkpoints when due; (final state, lines)."""
    from tqdm import tqdm

    lines, tokens, last_logged, t0 = [], 0, start, time.perf_counter()
    source_metrics = getattr(data, "metrics", dict)     # online sources report their rollouts (rl/rollout.py)
    with MetricsLog(cfg.run_dir, start) as log, tqdm(total=cfg.steps, initial=start, desc=cfg.method,
                                                     unit="step", dynamic_ncols=True, file=sys.stderr,
                                                     disable=jax.process_index() != 0) as bar:
        # A per-host source (fixed data) hands over this process's rows only (its `share`); rollouts the whole batch.
        share = getattr(data, "share", RowShare())
        for step in range(start, cfg.steps):
            batch = data.next(Policy(graphdef, state))
            if table is not None:
                batch |= {k: v[step][share.rows(len(v[step]))] for k, v in table.items()}
            real = int((batch["mask_BT"] > 0).sum())          # packed rows hold segment ids 1, 2, ...
            tokens += sum_over_processes(real) if share.count > 1 else real
            batch = place_batch(batch, mesh, share)
            with jax.transfer_guard("disallow"):      # nothing crosses host<->device inside the step by accident
                state, metrics = step_fn(state, batch, ref_params)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                # A NaN grad_norm is no "metric without a mean" (metrics_log.drop_undefined): the update it clipped
                # has already written NaN into the weights, so it stops the run like a NaN loss.
                for key in ("loss", "grad_norm"):
                    if key in metrics and not np.isfinite(metrics[key]):
                        raise FloatingPointError(f"{key} is {metrics[key]} at step {done}; finite up to step "
                                                 f"{last_logged} (steps {last_logged + 1}..{done} since)")
                elapsed = time.perf_counter() - t0
                line = {"step": done, "lr": float(lr(step)), **metrics, "tokens": tokens,
                        "tokens_per_s": tokens / max(elapsed, 1e-9), **source_metrics()}
                if "rollout_s" in line:           # the rest of the wall time went to the updates
                    line["update_s"] = max(elapsed - line["rollout_s"], 0.0)
                    line["update_tokens_per_s"] = tokens / max(line["update_s"], 1e-9)
                log.write(line)
                lines.append(line)
                # RL: the reward and strict accuracy say more than the loss (on-policy GRPO's is ~0 by design).
                # A metric without a value this time (no rows to average) is absent from the written line.
                rl = {name: f"{line[key]:{spec}}" for name, key, spec in
                      (("reward", "reward_mean", ".3f"), ("acc", "accuracy", ".2f")) if key in line}
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", **rl, tok_s=f"{line['tokens_per_s']:.0f}")
                tokens, last_logged, t0 = 0, done, time.perf_counter()
            bar.update(1)
            if checkpoint.due(done, cfg.checkpoint, cfg.steps):     # with LoRA: adapters + moments only
                checkpoint.save(manager, done, _saved_part(state), data.position(), config_json)
    return state, lines


def _saved_part(state):
    """What a checkpoint holds: the whole TrainState, or with LoRA adapters the trainable part of its params (the
    frozen base comes from model.path again on resume)."""
    return dataclasses.replace(state, params=lora.trainable(state.params))


def _restore(res: resume_lib.Resume, state, state_sharding, config_json: dict):
    """(state, data position) of the newest intact checkpoint; with LoRA its adapters joined to the base weights
    just loaded from model.path."""
    abstract = jax.eval_shape(lambda: _saved_part(state))
    restored, position = res.restore(abstract, _saved_part(state_sharding), config_json)
    frozen = lora.split_trainable(state.params)[1]           # the base weights, loaded from model.path again
    return dataclasses.replace(restored, params=lora.join(restored.params, frozen)), position


_check_same_run = resume_lib.check_same_run      # the one same-run check (caujax/resume.py: SAME_RUN, MAY_CHANGE)


def parse_args(argv: list[str]) -> tuple[RunConfig, bool]:
    """(config, resume) from the command line (caujax/train_cli.py); --help prints this module's docstring."""
    return train_cli.parse_args(argv, __doc__)


def main(argv: list[str] | None = None) -> list[dict]:
    cfg, resume = parse_args(sys.argv[1:] if argv is None else argv)
    initialize_from_env()                  # several processes (caujax/distributed.py), before any device is used
    return train(cfg, resume)


if __name__ == "__main__":
    caujax.plain_warnings()
    try:
        main()
    except (ValueError, FileNotFoundError) as err:      # bad input: the message says what; no traceback
        print(f"caujax.train: error: {err}", file=sys.stderr)
        sys.exit(2)
