"""--resume: which checkpoint a run continues from, whether it is the same run, and what happens to damaged ones.

The order, as train.py follows it:
  1. `plan` (before any model is built): list <run_dir>/checkpoints, check each step's files (checkpoint.damage), and
     refuse a run whose config differs from the newest intact checkpoint's in a same-run field (`check_same_run`);
  2. `Resume.restore` (once the model and optimizer exist): the newest checkpoint whose arrays all read back; one that
     fails to read is recorded as damaged and the next older one is tried;
  3. `Resume.set_aside` (before the run writes anything): damaged and half-written step directories are moved to
     <run_dir>/damaged_checkpoints/, never deleted, with a warning that names each and what is wrong with it. Orbax
     would otherwise list a damaged step as the newest, and its keep-last-K would delete intact older ones first.
Nothing is moved or written when the run is refused (no intact checkpoint, another run's settings).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import sys
import warnings

import jax

from caujax import checkpoint

# What makes a resumed run the same run: continued under another method, data, optimizer, seed, model, tokenizer,
# adapters or loss hyper-parameters, a checkpoint would mix two runs in one metrics.jsonl and one loss.png. The
# model section matters even though the checkpoint holds the trained weights: π_ref is model.path's weights (or the
# random init of arch/init_seed), the tokenizer gives token ids their meaning, and with LoRA the frozen base is read
# from model.path again. The method's own section (`--dpo.*`, `--grpo.*`, ...) is added to these keys.
SAME_RUN = ("method", "seed", "data", "optim", "model.path", "model.arch", "model.tokenizer", "model.param_dtype",
            "model.init_seed", "model.lora")
# Within those, what may change: how a batch is split and padded (exact accumulation, same loss), the export format,
# the RL logging cadence and stuck-run check. Everything outside SAME_RUN may change too: steps (to extend a run, which
# also stretches its lr schedule), log_every, checkpointing, the mesh, the compute dtype, remat, the attention
# kernel, the reference's mode, export, run_dir (a moved run).
MAY_CHANGE = ("data.micro_batch_size", "data.pad_multiple", "model.lora.export", "grpo.rollout.log_every",
              "grpo.rollout.stuck_rollouts", "ppo.rollout.log_every", "ppo.rollout.stuck_rollouts")
_MAY_CHANGE_PREFIXES = tuple(f"{key}=" for key in MAY_CHANGE)
DAMAGED_DIR = "damaged_checkpoints"     # under run_dir, beside checkpoints/ (orbax never looks there)
_MISSING = object()


def check_same_run(saved: dict, now: dict, run_dir) -> None:
    """Raise ValueError naming every same-run field (SAME_RUN, the method's section) whose value in `now` (this run's
    config as JSON data) differs from `saved` (the checkpoint's or config.json's). A key `saved` lacks is a field
    added since that run: it ran with the default, which is not a change."""
    changed = []
    for key in (*SAME_RUN, now["method"]):
        if key == "model.arch" and _get(now, "model.path") and _get(saved, "model.path"):
            continue                       # arch is ignored when a checkpoint gives the model
        old = _get(saved, key)
        if old is not _MISSING:
            changed += [d for d in diff(old, _get(now, key), key) if not d.startswith(_MAY_CHANGE_PREFIXES)]
    if changed:
        raise ValueError(f"--resume: {run_dir} holds a run with other settings: " + ", ".join(changed) + ". Resume "
                         f"it with its own settings (its config.json), or start a new --run_dir (to start from its "
                         f"weights: --model.path={run_dir}/hf)")


def diff(saved, now, prefix: str) -> list[str]:
    """["a.b=saved (this run: now)", ...] for every leaf of `saved` that differs in `now` (JSON data); a key `now`
    lacks (a field removed since) is no difference."""
    if now is _MISSING:
        return []
    if isinstance(saved, dict) and isinstance(now, dict):
        return [d for k in sorted(saved) for d in diff(saved[k], now.get(k, _MISSING), f"{prefix}.{k}")]
    # config.json holds lists where the dataclasses hold tuples; a long value (a whole section) is shortened.
    saved, now = (list(v) if isinstance(v, tuple) else v for v in (saved, now))
    short = lambda v: (r := repr(v)) if len(repr(v)) <= 80 else r[:77] + "..."
    return [] if saved == now else [f"{prefix}={short(saved)} (this run: {short(now)})"]


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


@dataclasses.dataclass
class Resume:
    """Where a run starts. `candidates`: steps whose files look complete, newest first; `damaged`: step directory
    name -> what is wrong; `step`: the step restored from, once `restore` succeeded; `manager`: the orbax
    CheckpointManager the run saves with (made by `set_aside` when `plan` needed none)."""

    run_dir: pathlib.Path
    options: object                      # the run's CheckpointConfig
    manager: object | None = None
    candidates: list[int] = dataclasses.field(default_factory=list)
    damaged: dict[str, str] = dataclasses.field(default_factory=dict)
    step: int | None = None

    @property
    def latest(self) -> int | None:
        """The newest checkpoint whose files look complete (its arrays are only read by `restore`)."""
        return self.candidates[0] if self.candidates else None

    def restore(self, abstract_state, shardings, config_json: dict) -> tuple[object, dict]:
        """(state, data position) of the newest checkpoint that reads back whole. A read failure marks the step
        damaged and the next older one is tried (checked to be the same run first); CheckpointDamaged when none is
        left. A CheckpointMismatch (an intact checkpoint of another model) is raised at once, naming the changed
        model fields too."""
        for step in self.candidates:
            try:
                if step != self.latest:      # the newest was checked by `plan`
                    check_same_run(checkpoint.saved_config(self.manager, step), config_json, self.run_dir)
                state, position, _ = checkpoint.restore(self.manager, step, abstract_state, shardings)
            except checkpoint.CheckpointDamaged as e:
                self.damaged[str(step)] = e.problem
                continue
            except checkpoint.CheckpointMismatch as e:
                saved = checkpoint.saved_config(self.manager, step)
                changed = diff(saved.get("model", {}), config_json["model"], "model")
                hint = ("\nthe checkpoint's run had " + ", ".join(changed)) if changed else ""
                raise checkpoint.CheckpointMismatch(f"{e}{hint}") from None
            self.step = step
            return state, position
        raise checkpoint.CheckpointDamaged(self.latest, "no checkpoint reads back",
                                           _none_intact(self.manager.directory, self.damaged))

    def set_aside(self) -> None:
        """Move every damaged or half-written step directory to <run_dir>/damaged_checkpoints/ (process 0), warn
        naming each, what is wrong with it and where it went, and (re)open the manager without them. After damage
        the intact checkpoints are exempt from keep-last-K for this run: storage that lost one may lose the next,
        and nothing written before is deleted by the recovery. Call when the run goes ahead."""
        if self.manager is not None:
            self.manager.close()
        if not self.damaged:
            self.manager = checkpoint.make_manager(self.run_dir, self.options)
            return
        src_root, dst_root = self.run_dir / "checkpoints", self.run_dir / DAMAGED_DIR
        notes = []
        for name, problem in sorted(self.damaged.items(), key=lambda kv: -_step_of(kv[0])):
            dst = dst_root / name
            for n in range(1, 1000):             # damaged twice: keep both
                if not dst.exists():
                    break
                dst = dst_root / f"{name}-{n}"
            if jax.process_index() == 0 and (src_root / name).exists():
                dst_root.mkdir(parents=True, exist_ok=True)
                shutil.move(src_root / name, dst)
            notes.append(f"checkpoint {src_root / name} is damaged: {problem}; moved to {dst}")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("caujax.resume.set_aside")
        intact = tuple(s for s in self.candidates if str(s) not in self.damaged)
        self.manager = checkpoint.make_manager(self.run_dir, self.options, preserve=intact)
        where = f"resuming from step {self.step}, the newest intact checkpoint" if self.step is not None else \
            "starting at step 0"
        kept = f"; the intact ones (steps {', '.join(map(str, intact))}) are kept through this run, past " \
            f"checkpoint.keep={self.options.keep}" if intact else ""
        warnings.warn("\n  ".join([f"{where}{kept}. Set aside (kept for inspection; delete when no longer needed):",
                                    *notes]), stacklevel=2)


def saved_steps(run_dir) -> list[int]:
    """The steps of <run_dir>/checkpoints/<step>/ directories, ascending, intact or not (orbax's half-written
    `<step>.orbax-checkpoint-tmp-*` directories are not steps)."""
    return sorted(int(p.name) for p in (pathlib.Path(run_dir) / "checkpoints").glob("*")
                  if p.name.isdigit() and p.is_dir())


def plan(cfg, config_json: dict, resume: bool) -> Resume:
    """Where the run `cfg` starts, decided before any model is built; raises ValueError for a fresh run into a
    run_dir with checkpoints, a resumed run with other same-run settings (check_same_run), and CheckpointDamaged
    when checkpoints exist and none is intact. Prints (stderr) when --resume finds no checkpoint."""
    run_dir = pathlib.Path(cfg.run_dir)
    root = run_dir / "checkpoints"
    saved = saved_steps(run_dir)
    unfinished = {p.name: "a save cut short before orbax finalized it (never listed or restored)"
                  for p in root.glob("*.orbax-checkpoint-tmp*")}
    if saved and not resume:          # checked first: never load a large model only to refuse the run_dir
        raise ValueError(f"{run_dir} already holds checkpoints (latest: step {saved[-1]}); pass --resume to continue "
                         "it, or choose another --run_dir")
    if not resume:
        return Resume(run_dir, cfg.checkpoint)
    if not saved:
        if (run_dir / "config.json").is_file():   # a run killed before its first checkpoint: still the same run?
            try:
                saved_json = json.loads((run_dir / "config.json").read_text())
            except ValueError as e:
                raise ValueError(f"--resume: {run_dir}/config.json is not valid JSON ({e}); it cannot tell whether "
                                 f"this is the same run: move it away to start afresh") from None
            check_same_run(saved_json, config_json, run_dir)
        say(f"--resume: no checkpoint in {root}: starting fresh at step 0")
        return Resume(run_dir, cfg.checkpoint, damaged=unfinished)
    manager = checkpoint.make_manager(run_dir, cfg.checkpoint)
    listed, res = set(manager.all_steps()), Resume(run_dir, cfg.checkpoint, manager, damaged=unfinished)
    for step in sorted(set(saved) | listed, reverse=True):
        problem = checkpoint.damage(manager, step) if step in listed else "not a finalized orbax checkpoint"
        if problem:
            res.damaged[str(step)] = problem
        else:
            res.candidates.append(step)
    try:
        if res.latest is None:
            raise checkpoint.CheckpointDamaged(saved[-1], "no intact checkpoint", _none_intact(root, res.damaged))
        check_same_run(checkpoint.saved_config(manager, res.latest), config_json, run_dir)
    except ValueError:
        manager.close()
        raise
    return res


def _none_intact(root, damaged: dict[str, str]) -> str:
    listing = "\n  ".join(f"{root}/{name}: {problem}" for name, problem in
                          sorted(damaged.items(), key=lambda kv: -_step_of(kv[0])))
    return (f"--resume: no intact checkpoint to resume from; every one is damaged (nothing was changed):\n  {listing}"
            f"\nRestore them from a copy, or move {root} away to start the run afresh")


def _step_of(name: str) -> int:
    digits = name.split(".")[0]
    return int(digits) if digits.isdigit() else -1


def say(message: str) -> None:
    """A caujax.train message on stderr, from process 0 only."""
    if jax.process_index() == 0:
        print(f"caujax.train: {message}", file=sys.stderr, flush=True)
