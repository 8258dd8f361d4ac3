"""The method table: every post-training method is one row of plain functions, and nothing else names a method.

The CLI's `--method` choices, the config's per-method sections (`--dpo.beta=...`), the objective the step
differentiates, where batches come from and what the reference model must supply are all read from METHODS.
A new method (GRPO, PPO) is a new row and its own files; train.py and step.py do not change.

Importing this module imports no jax: the row's functions are bound late (`_late`), so `caujax.config` can list
the methods and their hyperparameter classes on a machine, or in a process, that never trains.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from caujax.losses.params import DPOParams, KTOParams, SFTParams


def _late(module: str, name: str) -> Callable:
    """`module.name`, imported on the first call (the loss modules import jax)."""
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    call.__name__, call.__qualname__, call.__module__ = name, f"{module}.{name}", module
    return call


@dataclasses.dataclass(frozen=True)
class Method:
    """One method. Shapes and layouts follow losses/common.py; each function is plain and jit-friendly where it
    runs inside the step (objective, reference, global_fields).

    name           the `--method` value and the name of the config section holding `params`
    summary        one line for --help and config.json readers
    params         the loss hyperparameters' dataclass (caujax/losses/params.py), the config section's type
    objective      (model, micro_batch, params) -> losses.common.Loss, sums over the micro-batch
    examples       (items, seed) -> training examples, for problem sources (data/examples.py)
    batches        (examples, tokenizer, data_cfg, kl_group, position) -> data.examples.BatchSource
    reference      (ref_model, micro_batch) -> {field: array}, the frozen reference's log-probs, or None when the
                   method needs no reference model (then none is kept in memory)
    global_fields  (model, stacked micro_batches) -> {field: array} over the whole global batch, computed before
                   the loss (KTO's z0), or None
    row_blocks     stacked row blocks per batch: 2 for DPO's [chosen; rejected] (step.split_micro_batches)
    min_micro_batch  the fewest rows a micro-batch may hold (KTO rotates completions within one for its KL term)
    """

    name: str
    summary: str
    params: type
    objective: Callable
    examples: Callable
    batches: Callable
    reference: Callable | None = None
    global_fields: Callable | None = None
    row_blocks: int = 1
    min_micro_batch: int = 1


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sft", "token NLL (or DFT) on worked solutions (TRL SFTTrainer)", SFTParams,
           objective=_late("caujax.losses.sft", "objective"),
           examples=_late("caujax.data.examples", "sft_examples"), batches=_late("caujax.data.examples", "sft_batches")),
    Method("dpo", "direct preference optimization, Rafailov et al. 2023 eq. 7 (TRL DPOTrainer)", DPOParams,
           objective=_late("caujax.losses.dpo", "objective"),
           examples=_late("caujax.data.examples", "dpo_examples"), batches=_late("caujax.data.examples", "dpo_batches"),
           reference=_late("caujax.losses.dpo", "reference_logps"), row_blocks=2),
    Method("kto", "Kahneman-Tversky optimization, Ethayarajh et al. 2024 eq. 7 (TRL KTOTrainer)", KTOParams,
           objective=_late("caujax.losses.kto", "objective"),
           examples=_late("caujax.data.examples", "kto_examples"), batches=_late("caujax.data.examples", "kto_batches"),
           reference=_late("caujax.losses.kto", "reference_logps"),
           global_fields=_late("caujax.losses.kto", "global_fields"), min_micro_batch=2),
)}


def get(name: str) -> Method:
    """The row of `name`; a ValueError lists the known methods."""
    if name not in METHODS:
        raise ValueError(f"method={name!r}; expected one of {tuple(METHODS)}")
    return METHODS[name]
