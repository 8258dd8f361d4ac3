"""python -m caujax.train --method {sft,dpo,kto,grpo,ppo} --config configs/tiny.py [--resume] [--a.b=c ...]

`train` reads top to bottom: config, mesh, text and tokenizer, model, optimizer, checkpoint restore, data, step,
loop. It names no method: what differs between methods is their row in caujax/methods.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import pathlib
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from caujax import checkpoint, methods
from caujax.config import RunConfig, apply_overrides, load_preset, parse_overrides, to_json_dict
from caujax.data import batches
from caujax.data.examples import SourceContext, load_examples, texts
from caujax.metrics_log import MetricsLog
from caujax.models import Decoder, load_pretrained, lora, save_pretrained
from caujax.models.layout import is_matrix
from caujax.sharding import batch_ways, make_mesh, tree_shardings
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
    arch = arch.replace(compute_dtype=src.compute_dtype, remat=src.remat, attention=src.attention,
                        attention_block=src.attention_block, lora=src.lora if src.lora.rank else None)
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
    """Run `cfg`; returns the metrics lines this call wrote."""
    run_dir = pathlib.Path(cfg.run_dir)
    method = methods.get(cfg.method)
    config_json = to_json_dict(cfg)
    saved = sorted(int(p.name) for p in (run_dir / "checkpoints").glob("*") if p.name.isdigit())
    if saved and not resume:          # checked first: never load a large model only to refuse the run_dir
        raise ValueError(f"{run_dir} already holds checkpoints (latest: step {saved[-1]}); pass --resume to continue "
                         "it, or choose another --run_dir")
    manager = checkpoint.make_manager(run_dir, cfg.checkpoint) if saved else None
    latest = manager and checkpoint.latest_step(manager)
    if latest is not None:            # resuming: the run must be the same run, and have steps left
        _check_same_run(checkpoint.saved_config(manager, latest), config_json, run_dir)
        # A finished run whose export is missing or older (killed before or during it) goes on to export.
        if latest >= cfg.steps and (not cfg.export or exported_step(cfg) == latest):
            print(f"caujax.train: {run_dir} is already at step {latest} of steps={cfg.steps}: nothing to train "
                  f"(raise --steps to continue it)", file=sys.stderr)
            manager.close()
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
        _check_peft_export(cfg)

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
    data = method.batches(examples, tokenizer, SourceContext(cfg, micro, mesh, None if in_step else ref), None)
    if not in_step:
        ref_params = None                         # the step takes none (the rollout holds its own reference)

    tx = make_optimizer(cfg.optim, cfg.steps)
    lr = learning_rate(cfg.optim, cfg.steps)
    state, state_sharding = init_state(params, tx, mesh, cfg.seed)
    del params

    # Train state, first match wins (big_vision's precedence, spelled out):
    #  1. --resume and a checkpoint in <run_dir>/checkpoints: the latest (params, moments, step, RNG, data position);
    #  2. otherwise step 0 from the model above (a fresh run was refused above if run_dir holds checkpoints).
    manager = manager or checkpoint.make_manager(run_dir, cfg.checkpoint)
    position = None
    if latest is not None:            # found and checked above; a fresh run into it was refused
        state, position = _restore(manager, latest, state, state_sharding, config_json)
    start = int(jax.device_get(state.step))

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
    return lines


EXPORT_MARKER = "caujax_export.json"      # the step an export was written at, inside the exported directory


def export_dir(cfg: RunConfig) -> pathlib.Path:
    """<run_dir>/hf (a Hugging Face directory), or <run_dir>/adapter for a PEFT adapter export."""
    peft = cfg.model.lora.rank and cfg.model.lora.export == "peft"
    return pathlib.Path(cfg.run_dir) / ("adapter" if peft else "hf")


def exported_step(cfg: RunConfig) -> int | None:
    """The step of the run's latest complete export, or None."""
    marker = export_dir(cfg) / EXPORT_MARKER
    return json.loads(marker.read_text())["step"] if marker.exists() else None


def export(model, tokenizer, path: pathlib.Path, sample_text: str, extra_files: dict[str, str] | None = None) -> None:
    """A Hugging Face directory (gathered on every process, written by process 0), with `extra_files` {name: text}
    beside it; process 0 then warns when AutoTokenizer would read the tokenizer back differently (transformers picks
    the tokenizer class from config.json's model_type for some families, e.g. Qwen2Tokenizer for qwen2)."""
    import shutil

    import transformers

    # Written beside the target and renamed into place: a kill mid-export never leaves a directory that looks done.
    partial = path.with_name(path.name + ".partial")
    if jax.process_index() == 0:
        shutil.rmtree(partial, ignore_errors=True)       # a leftover of a killed export
    save_pretrained(model, tokenizer, partial)
    if jax.process_index() != 0:          # only process 0 wrote the directory
        return
    for name, value in (extra_files or {}).items():
        (partial / name).write_text(value)
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    reloaded = transformers.AutoTokenizer.from_pretrained(path)
    if reloaded(sample_text, add_special_tokens=False).input_ids != \
            tokenizer(sample_text, add_special_tokens=False).input_ids:
        warnings.warn(f"{path}: AutoTokenizer loads the exported tokenizer as {type(reloaded).__name__}, which "
                      f"encodes differently from the {type(tokenizer).__name__} the model was trained with")


def _check_peft_export(cfg: RunConfig) -> None:
    """Refuse up front (not after training) a PEFT export that cannot be written or used."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ValueError("model.lora.export=peft needs peft: pip install 'caujax[peft]' (or "
                         "--model.lora.export=merged for a plain Hugging Face directory)") from None
    path = cfg.model.path
    if not path or path.endswith(".gguf"):
        raise ValueError(f"model.lora.export=peft writes an adapter for a Hugging Face base checkpoint, but "
                         f"model.path={path!r} is {'a GGUF file' if path else 'a random init'}: export the base "
                         f"with caujax.models.save_pretrained and train from that directory, or use "
                         f"--model.lora.export=merged")


def _loop(cfg, step_fn, graphdef, state, ref_params, data, table, lr, mesh, manager, start, config_json):
    """One jitted step per batch, metrics every log_every steps (metrics.jsonl, and TensorBoard when a writer
    imports), checkpoints when due; (final state, lines)."""
    from tqdm import tqdm

    lines, tokens, last_logged, t0 = [], 0, start, time.perf_counter()
    source_metrics = getattr(data, "metrics", dict)     # online sources report their rollouts (rl/rollout.py)
    with MetricsLog(cfg.run_dir, start) as log, tqdm(total=cfg.steps, initial=start, desc=cfg.method,
                                                     unit="step", dynamic_ncols=True, file=sys.stderr) as bar:
        for step in range(start, cfg.steps):
            batch = data.next(Policy(graphdef, state))
            if table is not None:
                batch |= {k: v[step] for k, v in table.items()}
            tokens += int((batch["mask_BT"] > 0).sum())     # packed rows hold segment ids 1, 2, ...
            batch = place_batch(batch, mesh)
            with jax.transfer_guard("disallow"):      # nothing crosses host<->device inside the step by accident
                state, metrics = step_fn(state, batch, ref_params)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not np.isfinite(metrics["loss"]):
                    raise FloatingPointError(f"loss is {metrics['loss']} at step {done}; finite up to step "
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
                rl = {"reward": f"{line['reward_mean']:.3f}", "acc": f"{line['accuracy']:.2f}"} \
                    if "reward_mean" in line else {}
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


def _restore(manager, step: int, state, state_sharding, config_json: dict):
    """(state, data position) of checkpoint `step`; a mismatch also names the config fields that changed."""
    abstract = jax.eval_shape(lambda: _saved_part(state))
    try:
        restored, position, _ = checkpoint.restore(manager, step, abstract, _saved_part(state_sharding))
        frozen = lora.split_trainable(state.params)[1]           # the base weights, loaded from model.path again
        restored = dataclasses.replace(restored, params=lora.join(restored.params, frozen))
    except checkpoint.CheckpointMismatch as e:
        saved = checkpoint.saved_config(manager, step)
        changed = _diff(saved.get("model", {}), config_json["model"], "model")
        hint = ("\nthe checkpoint's run had " + ", ".join(changed)) if changed else ""
        raise checkpoint.CheckpointMismatch(f"{e}{hint}") from None
    return restored, position


# What makes a run the same run: a checkpoint continued under another method, data, optimizer, seed or loss
# hyperparameters would mix two runs in one metrics.jsonl. steps (to extend a run), the mesh, micro-batching (exact
# accumulation), checkpointing, logging (RL: the rollout table, the stuck-run check), export and the reference's mode
# may change; so may the model section, whose
# weights the checkpoint replaces (a shape change is named by the restore).
_SAME_RUN = ("method", "data", "optim", "seed")
_MAY_CHANGE = ("data.micro_batch_size", "data.pad_multiple", "grpo.rollout.log_every", "grpo.rollout.stuck_rollouts",
               "ppo.rollout.log_every", "ppo.rollout.stuck_rollouts")


# With LoRA the checkpoint holds only the adapters: the base is read from the model section again, so the base and
# the adapters' scale are part of what makes the run the same run.
_SAME_LORA_RUN = ("path", "arch", "init_seed", "lora")


def _check_same_run(saved: dict, now: dict, run_dir) -> None:
    keys = (*_SAME_RUN, now["method"])
    changed = [d for k in keys for d in _diff(saved.get(k), now.get(k), k)
               if not d.startswith(tuple(f"{m}=" for m in _MAY_CHANGE))]
    if now["model"]["lora"]["rank"]:
        model = saved.get("model", {})
        changed += [d for k in _SAME_LORA_RUN if k in model
                    for d in _diff(model[k], now["model"][k], f"model.{k}") if not d.startswith("model.lora.export=")]
    if changed:
        raise ValueError(f"--resume: {run_dir} holds a run with other settings: " + ", ".join(changed) + ". Resume "
                         f"it with its own settings (its config.json), or start a new --run_dir (to start from its "
                         f"weights: --model.path={run_dir}/hf)")


def _diff(saved, now, prefix: str) -> list[str]:
    if isinstance(saved, dict) and isinstance(now, dict):
        # A key the saved config lacks is a field added since it was written: that run had its default.
        return [d for k in sorted(saved.keys())
                for d in _diff(saved.get(k), now.get(k), f"{prefix}.{k}")]
    now = list(now) if isinstance(now, tuple) else now
    return [] if saved == now else [f"{prefix}={saved!r} (this run: {now!r})"]


def plot_loss(run_dir: pathlib.Path) -> None:
    """<run_dir>/loss.png from metrics.jsonl: the loss, and for online RL the mean reward and strict accuracy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    keys = ["loss"] + [k for k in ("reward_mean", "accuracy") if k in lines[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot([l["step"] for l in lines], [l.get(key) for l in lines], marker="." if len(lines) < 50 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(run_dir.name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "loss.png", dpi=100)
    plt.close(fig)


def parse_args(argv: list[str]) -> tuple[RunConfig, bool]:
    parser = argparse.ArgumentParser(prog="python -m caujax.train", description=__doc__, allow_abbrev=False,
                                     epilog="Any config field can be set with a dotted override, e.g. --optim.lr=1e-5, "
                                            "--grpo.rollout.rewards=causal,format; --list-keys prints them all")
    parser.add_argument("--config", required=True, help="a preset file, e.g. configs/tiny.py")
    parser.add_argument("--method", choices=list(methods.METHODS),
                        help="the method (default: the preset's): " + "; ".join(
                            f"{m.name}: {m.summary}" for m in methods.METHODS.values()))
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in run_dir")
    parser.add_argument("--list-keys", action="store_true",
                        help="print every dotted config key with the preset's value (after overrides), then exit")
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    if args.method:
        overrides = {"method": args.method, **overrides}
    preset = load_preset(args.config)
    cfg = apply_overrides(preset, overrides)
    section = getattr(preset, preset.method)
    if cfg.method != preset.method and section != type(section)():
        ours = "as set on the command line" if any(k.startswith(cfg.method + ".") for k in overrides) else "defaults"
        warnings.warn(f"{args.config} configures {preset.method} (its --{preset.method}.* section is not the "
                      f"default) but the run is --method {cfg.method}: those settings are not used, and the "
                      f"--{cfg.method}.* section is {ours}", stacklevel=2)
    if args.list_keys:
        print("\n".join(f"--{k}={v!r}" for k, v in _flat(to_json_dict(cfg)).items()))
        raise SystemExit(0)
    return cfg, args.resume


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    cfg, resume = parse_args(sys.argv[1:] if argv is None else argv)
    return train(cfg, resume)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:      # bad input: the message says what; no traceback
        print(f"caujax.train: error: {err}", file=sys.stderr)
        sys.exit(2)
