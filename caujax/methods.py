"""The method table: every post-training method is one row of plain functions, and nothing else names a method.

The CLI's `--method` choices, the config's per-method sections (`--dpo.beta=...`), the objective the step
differentiates, where batches come from and what the reference model must supply are all read from METHODS.
A new method is a new row and its own files; train.py and step.py do not change. GRPO and PPO are rows whose batch
source samples from the current policy (rl/rollout.py).

Importing this module imports no jax: the row's functions are bound late (`_late`), so `caujax.config` can list
the methods and their hyperparameter classes on a machine, or in a process, that never trains.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from caujax.losses.params import DPOParams, GRPOParams, KTOParams, PPOParams, SFTParams


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
    batches        (examples, tokenizer, data.examples.SourceContext, position) -> data.examples.BatchSource
    reference      (ref_model, micro_batch, params) -> {field: array}, the frozen reference's log-probs inside the
                   step, or None when the step needs none
    needs_reference  params -> bool: whether a frozen π_ref is kept at all (GRPO: beta > 0, PPO: kl_coef > 0);
                   None = "reference is not None". A method that needs π_ref but has no in-step `reference` gets it in
                   its SourceContext (PPO puts the KL penalty into the rewards at rollout time).
    wrap           (graphdef, params, params_section) -> (graphdef, params): the trained module built around the
                   decoder (PPO's value head or critic), or None to train the decoder itself
    policy         trained module -> the Decoder that samples and is exported (None: the module is the decoder)
    validate       (cfg, examples, tokenizer) -> None, raising ValueError: the batch source's input checks, run
                   before the model loads (RL: schedule, reward functions, prompt lengths), or None
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
    needs_reference: Callable | None = None
    wrap: Callable | None = None
    policy: Callable | None = None
    validate: Callable | None = None

    def uses_reference(self, params) -> bool:
        """Whether this run keeps a frozen π_ref (its section's params decide for GRPO and PPO)."""
        return self.reference is not None if self.needs_reference is None else bool(self.needs_reference(params))


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
    Method("grpo", "group relative policy optimization on sampled completions, Shao et al. 2024 eq. 3 (TRL "
                   "GRPOTrainer)", GRPOParams,
           objective=_late("caujax.losses.grpo", "objective"),
           examples=_late("caujax.data.examples", "rl_examples"), batches=_late("caujax.rl.rollout", "grpo_batches"),
           reference=_late("caujax.losses.grpo", "reference_logps"), needs_reference=lambda p: p.beta > 0,
           validate=_late("caujax.rl.rollout", "validate")),
    Method("ppo", "PPO with a learned value and GAE, Ouyang et al. 2022 (TRL experimental PPOTrainer)", PPOParams,
           objective=_late("caujax.losses.ppo", "objective"),
           examples=_late("caujax.data.examples", "rl_examples"), batches=_late("caujax.rl.rollout", "ppo_batches"),
           needs_reference=lambda p: p.kl_coef > 0,
           wrap=lambda graphdef, params, section: _late("caujax.rl.critic", "wrap")(graphdef, params, section.critic),
           policy=_late("caujax.rl.critic", "policy_of"), validate=_late("caujax.rl.rollout", "validate")),
)}


def get(name: str) -> Method:
    """The row of `name`; a ValueError lists the known methods."""
    if name not in METHODS:
        raise ValueError(f"method={name!r}; expected one of {tuple(METHODS)}")
    return METHODS[name]
