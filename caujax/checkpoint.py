"""Orbax checkpoints of a run: train state, data-iterator position and config.json, async, keep-last-K, any mesh.

A checkpoint is one step directory holding three items: `state` (the TrainState: params, optimizer moments, step,
RNG), `data` (the iterator position, JSON) and `config` (the RunConfig, JSON), so a resumed run reads the same
batches it would have read (nanodo's layout). Restoring takes the target shardings from the abstract state of the
*current* run, so a checkpoint written on one mesh loads onto another.

What orbax 0.12.8 guarantees, and what it does not: on a POSIX file system a step is written into
`<step>.orbax-checkpoint-tmp-<time>` and renamed to `<step>` once complete (AtomicityMode ATOMIC_RENAME; on GCS a
`commit_success.txt` marks completion instead), so a save cut short by a kill is never listed by `all_steps()` - but
it stays on disk (`cleanup_tmp_directories` is off by default). A listed step is only as intact as its files: one
deleted or truncated afterwards (a full disk, a bad copy, a hand edit) is listed all the same, and orbax then fails
deep in tensorstore, or, without `state/_METADATA`, reads an empty tree. `damage` and `restore` below tell such a
checkpoint apart (CheckpointDamaged) from one that is intact but belongs to another model (CheckpointMismatch).
"""
from __future__ import annotations

import json
import pathlib
import re

import jax
import orbax.checkpoint as ocp

from caujax.config import CheckpointConfig
from caujax.models.layout import check_layer_layout, path_parts


class CheckpointMismatch(ValueError):
    """A checkpoint whose arrays do not fit the current model/optimizer; the message names every difference."""


class CheckpointDamaged(ValueError):
    """A checkpoint whose files are missing, truncated or unreadable. `step` is its step, `problem` what is wrong
    (also the message's tail)."""

    def __init__(self, step: int, problem: str, message: str | None = None):
        super().__init__(message or f"checkpoint step {step} is damaged: {problem}")
        self.step, self.problem = step, problem


def make_manager(run_dir, cfg: CheckpointConfig, preserve: tuple[int, ...] = ()) -> ocp.CheckpointManager:
    """Checkpoints under <run_dir>/checkpoints, the last `cfg.keep` kept (train.py decides when to save), and also
    the steps in `preserve`, which keep-last-K never deletes (a run resumed past damage keeps the intact ones).

    With async saving, `save` returns once the arrays are copied to host memory (so the next step may reuse their
    donated device buffers) and the files are written by a background thread."""
    if preserve:    # orbax: max_to_keep is LatestN; the two options exclude each other
        from orbax.checkpoint import checkpoint_managers as policies
        keep = dict(preservation_policy=policies.AnyPreservationPolicy(
            [policies.LatestN(n=cfg.keep), policies.CustomSteps(steps=list(preserve))]))
    else:
        keep = dict(max_to_keep=cfg.keep)
    options = ocp.CheckpointManagerOptions(**keep, enable_async_checkpointing=cfg.async_save, create=True)
    # Handlers named up front, so a fresh process can read a checkpoint's metadata before restoring it.
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(pathlib.Path(run_dir).absolute() / "checkpoints", options=options,
                                 item_handlers=handlers)


def due(step: int, cfg: CheckpointConfig, last_step: int) -> bool:
    """Save after `step` steps: on every multiple of every_steps, and at the end of the run."""
    return step % cfg.every_steps == 0 or step == last_step


def save(manager: ocp.CheckpointManager, step: int, state, data_position: dict, config: dict) -> None:
    """Start saving checkpoint `step` (the number of optimizer steps taken)."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_position),
                              config=ocp.args.JsonSave(config))
    manager.save(step, args=args, force=True)


def latest_step(manager: ocp.CheckpointManager) -> int | None:
    """The newest complete checkpoint; a save cut short by a crash is never listed (orbax finalizes by rename)."""
    return manager.latest_step()


def restore(manager: ocp.CheckpointManager, step: int, abstract_state, shardings) -> tuple[object, dict, dict]:
    """(state, data position, config dict) of checkpoint `step`, each array placed in its sharding from
    `shardings` (same structure as the state, e.g. step.tree_shardings of the current run's abstract state).
    Raises CheckpointDamaged when a file is missing or an array cannot be read (naming the file or the array), and
    CheckpointMismatch naming each array whose shape or dtype differs, or that exists on one side only."""
    problem = damage(manager, step)
    if problem:
        raise CheckpointDamaged(step, problem)
    check_compatible(manager, step, abstract_state)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore(),
                              config=ocp.args.JsonRestore())
    try:
        restored = manager.restore(step, args=args)
    except Exception as e:      # only read failures are damage; anything else (memory, a bug) goes up unchanged
        problem = _read_failure(e)
        if problem is None:
            raise
        raise CheckpointDamaged(step, problem) from e
    return restored.state, restored.data, restored.config


def saved_config(manager: ocp.CheckpointManager, step: int) -> dict:
    """The RunConfig (as JSON data) that checkpoint `step` was written with; CheckpointDamaged when unreadable."""
    try:
        return manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointDamaged(step, _read_failure(e) or f"config unreadable ({type(e).__name__}: {e})") from e


# The files without which orbax cannot even list a checkpoint's arrays, with what each holds. The array data lives in
# state/ocdbt.process_*/d/* (OCDBT), content-addressed: a missing or cut one shows only when read (restore below).
_REQUIRED = {"state/_METADATA": "the names, shapes and dtypes of the state's arrays",
             "data/metadata": "the data iterator's position", "config/metadata": "the run's config"}


def damage(manager: ocp.CheckpointManager, step: int) -> str | None:
    """What is wrong with the files of checkpoint `step` that can be seen without reading its arrays, or None:
    a missing item directory, a missing or unparsable metadata file, an OCDBT database without its root manifest.
    Cheap (a few small files), so every checkpoint of a run can be checked before any model is built."""
    root = pathlib.Path(manager.directory) / str(step)
    for name, what in _REQUIRED.items():
        path = root / name
        if not path.is_file():
            return f"{name} is missing: {what}"
        try:
            json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            return f"{name} is not valid JSON, cut short? ({e}): {what}"
    state = root / "state"
    if any(state.glob("ocdbt.process_*")) and not (state / "manifest.ocdbt").is_file():
        return "state/manifest.ocdbt is missing: the root of the arrays' OCDBT database"
    return None


def _read_failure(e: BaseException) -> str | None:
    """What a failed read says, briefly (the array it could not read and tensorstore's reason), or None when `e` is
    no read failure. Orbax wraps tensorstore's error (NOT_FOUND, OUT_OF_RANGE, ...) in a plain Exception."""
    chain = []
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for x in chain:
        if isinstance(x, (FileNotFoundError, json.JSONDecodeError)):
            return f"{type(x).__name__}: {x}"
    text = "\n".join(str(x) for x in chain)
    status = re.search(r"\b(NOT_FOUND|FAILED_PRECONDITION|OUT_OF_RANGE|DATA_LOSS): ([^\n]*)", text)
    if status is None:
        return None
    reason = re.sub(r' in OCDBT database at local file "[^"]*"', "", status.group(0)).split(" [tensorstore_spec")[0]
    arrays = sorted(set(re.findall(r'(?:Error reading|Metadata at) "([^"/]+)/', text)))
    return f"array {', '.join(arrays) or '(unnamed)'} cannot be read: {reason.strip()}"


def check_compatible(manager: ocp.CheckpointManager, step: int, abstract_state) -> None:
    """Compare the saved array metadata with the abstract state, before any bytes are read. A checkpoint from before
    scan-over-layers (per-layer parameters) is refused with a message saying what changed and how to proceed."""
    metadata = manager.item_metadata(step)["state"]
    try:
        check_layer_layout(metadata)
    except ValueError as e:
        raise CheckpointMismatch(f"checkpoint {manager.directory}/{step}: {e}") from None
    saved = {_name(path): (tuple(m.shape), str(m.dtype))
             for path, m in jax.tree_util.tree_leaves_with_path(metadata)}
    wanted = {_name(path): (tuple(a.shape), str(a.dtype))
              for path, a in jax.tree_util.tree_leaves_with_path(abstract_state)}
    problems = [(0, name, f"{name}: in the checkpoint, not in the model") for name in saved.keys() - wanted.keys()]
    problems += [(0, name, f"{name}: expected by the model, not in the checkpoint")
                 for name in wanted.keys() - saved.keys()]
    problems += [(1, name, f"{name}: checkpoint has shape {saved[name][0]} {saved[name][1]}, "
                           f"the model expects {wanted[name][0]} {wanted[name][1]}")
                 for name in saved.keys() & wanted.keys() if saved[name] != wanted[name]]
    if problems:
        # Parameters first, missing/extra arrays (a different layer count) before shape differences; the optimizer
        # moments mirror the parameters and would only repeat the same differences.
        problems = [text for _, _, text in sorted(problems, key=lambda p: (not p[1].startswith("params."), p[0], p[1]))]
        shown = "\n  ".join(problems[:12]) + (f"\n  ... {len(problems) - 12} more" if len(problems) > 12 else "")
        raise CheckpointMismatch(f"checkpoint {manager.directory}/{step} does not fit this run "
                                 f"({len(problems)} arrays differ):\n  {shown}")


def _name(path) -> str:
    """"params.layers.attn.q.value": the dotted key path, the same on both sides of the comparison."""
    return ".".join(path_parts(path))
