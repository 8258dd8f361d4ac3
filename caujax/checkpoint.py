"""Orbax checkpoints of a run: train state, data-iterator position and config.json, async, keep-last-K, any mesh.

A checkpoint is one step directory holding three items: `state` (the TrainState: params, optimizer moments, step,
RNG), `data` (the iterator position, JSON) and `config` (the RunConfig, JSON), so a resumed run reads the same
batches it would have read (nanodo's layout). Restoring takes the target shardings from the abstract state of the
*current* run, so a checkpoint written on one mesh loads onto another.
"""
from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp

from caujax.config import CheckpointConfig
from caujax.models.layout import check_layer_layout, path_parts


class CheckpointMismatch(ValueError):
    """A checkpoint whose arrays do not fit the current model/optimizer; the message names every difference."""


def make_manager(run_dir, cfg: CheckpointConfig) -> ocp.CheckpointManager:
    """Checkpoints under <run_dir>/checkpoints, the last `cfg.keep` kept (train.py decides when to save).

    With async saving, `save` returns once the arrays are copied to host memory (so the next step may reuse their
    donated device buffers) and the files are written by a background thread."""
    options = ocp.CheckpointManagerOptions(max_to_keep=cfg.keep, enable_async_checkpointing=cfg.async_save,
                                           create=True)
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
    Raises CheckpointMismatch naming each array whose shape or dtype differs, or that exists on one side only."""
    check_compatible(manager, step, abstract_state)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore(),
                              config=ocp.args.JsonRestore())
    restored = manager.restore(step, args=args)
    return restored.state, restored.data, restored.config


def saved_config(manager: ocp.CheckpointManager, step: int) -> dict:
    """The RunConfig (as JSON data) that checkpoint `step` was written with."""
    return manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config


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
