"""The train step: TrainState, the optimizer, and make_train_step (one pure jitted function, exact accumulation).

Skip this on first read: `make_train_step(objective, tx, ...)(state, batch, ref_params) -> (state, metrics)` is all
train.py needs. The rest is how it stays exact (sums, not means, across micro-batches) and sharded (explicit
in/out shardings from the parameters' logical names). The step knows no method: what differs between methods comes
in as functions from their row of caujax/methods.py (objective, reference, global_fields), and each Loss names its
own metric denominators.
"""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import Array
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from caujax.config import OptimConfig
from caujax.losses.common import Loss
from caujax.models import lora
from caujax.models.layout import matrix_mask
from caujax.data.batches import RowShare
from caujax.sharding import (BATCH_AXES, TRAIN_RULES, batch_sharding, batch_ways, fetch_global, put_global,
                             put_local, tree_shardings)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    step: Array                       # optimizer steps taken, int32 scalar
    params: nnx.State                 # θ, the master weights (ModelSource.param_dtype); with LoRA adapters the
    #                                   frozen base weights too (models/lora.py: split_trainable)
    opt_state: optax.OptState         # of the trainable part of params only
    rng: Array                        # raw uint32 PRNG key: each step splits off its key (micro-batch field "rng")


class Policy(NamedTuple):
    """What a batch source may sample from before a step (online RL rollouts): the current weights
    `nnx.merge(graphdef, state.params)` and the run's key chain `state.rng`. Fixed-data sources ignore it."""
    graphdef: nnx.GraphDef
    state: TrainState


def learning_rate(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """η_t: linear warmup from 0 over warmup_ratio * total_steps, then cosine / linear decay to min_lr_ratio * η
    at the last step (or constant)."""
    warmup = int(round(cfg.warmup_ratio * total_steps))
    end = cfg.lr * cfg.min_lr_ratio
    decay_steps = max(total_steps - warmup, 1)
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.min_lr_ratio)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(cfg.lr, end, decay_steps)
    else:
        decay = optax.constant_schedule(cfg.lr)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), decay], [warmup])


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on the schedule; weight decay on matrices only (decaying norm scales and
    biases towards 0 changes what the layer computes). Matrices are told by path, not rank: a stacked norm scale
    [L, D] is 2-D (models/layout.py)."""
    adamw = optax.adamw(learning_rate(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                        weight_decay=cfg.weight_decay, mask=matrix_mask)
    if cfg.max_grad_norm is None:
        return adamw
    return optax.chain(clip_by_global_norm(cfg.max_grad_norm), adamw)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformationExtraArgs:
    """`optax.clip_by_global_norm` (Pascanu et al. 2013: g * max_norm / ‖g‖₂ when ‖g‖₂ >= max_norm; the same empty
    state, so checkpoints are unchanged) that takes the norm from the caller when it has one:
    `tx.update(g, state, params, global_norm=‖g‖₂)`. The train step passes ‖Σg‖₂ / n from its float32 sum, so the
    mean gradient Σg / n is never written out whole for a reduction, and g is scaled by one scalar factor (as
    torch's clip_grad_norm_) rather than divided: XLA copies neither a reduction's operand nor a division into
    AdamW's two moment updates, it writes them out. On Gemma-3-270M (a tied 262,144 x 640 embedding) that was one
    [V, D] float32 buffer, 0.67 GB of the SFT step's peak (bench/README.md, memory)."""
    def update(updates, state, params=None, *, global_norm=None):
        del params
        norm = optax.tree.norm(updates) if global_norm is None else global_norm
        scale = jnp.where(norm < max_norm, 1.0, max_norm / norm)
        return jax.tree.map(lambda t: t * scale.astype(t.dtype), updates), state
    return optax.GradientTransformationExtraArgs(optax.init_empty_state, update)


def init_state(params: nnx.State, tx: optax.GradientTransformation, mesh: Mesh, seed: int,
               rules=TRAIN_RULES) -> tuple[TrainState, TrainState]:
    """(state, state shardings): the optimizer state is created directly in its sharding (no host copy); it covers
    the trainable parameters only (all of them, or the LoRA adapters and any head: models/lora.py)."""
    new = lambda p, key: TrainState(jnp.zeros((), jnp.int32), p, tx.init(lora.trainable(p)), key)
    abstract = jax.eval_shape(lambda p: new(p, jax.random.PRNGKey(0)), params)
    sharding = tree_shardings(abstract, mesh, rules)
    make = jax.jit(lambda p: new(p, jax.random.PRNGKey(seed)), in_shardings=(sharding.params,),
                   out_shardings=sharding)
    return make(params), sharding


def place_batch(batch: dict, mesh: Mesh, share: RowShare = RowShare()) -> dict[str, Array]:
    """Host numpy rows -> global arrays split by rows over data x fsdp. share=RowShare(): the host holds the whole
    global batch (every host builds the same one; each places only its own shards, sharding.put_global); else the
    host holds only its part (sharding.row_share; a per-host source, data/examples.FixedBatches)."""
    sharding = batch_sharding(mesh)
    if share.count == 1:
        return {k: put_global(v, sharding) for k, v in batch.items()}
    return {k: put_local(v, sharding, share.count) for k, v in batch.items()}


def split_micro_batches(batch: dict[str, Array], num_micro_batches: int, row_blocks: int = 1) -> dict[str, Array]:
    """[rows, ...] -> [M, rows / M, ...] for every field. The largest field holds `row_blocks` stacked blocks of n
    rows (2 for DPO's [chosen; rejected], 1 otherwise) and a field of k * n rows holds k such blocks: each block is
    split alike, so micro-batch m keeps pair i's chosen and rejected rows together, in the common.py layout."""
    M = num_micro_batches
    n, rem = divmod(max(x.shape[0] for x in batch.values()), row_blocks)
    if rem or n % M:
        raise ValueError(f"batch of {n} rows/pairs (x{row_blocks} stacked) does not split into {M} micro-batches")

    def split(name, x):
        k, rem = divmod(x.shape[0], n)
        if rem or k == 0:
            raise ValueError(f"batch field {name} has {x.shape[0]} rows, not a multiple of {n}")
        x = x.reshape((k, M, n // M) + x.shape[1:])
        return jnp.swapaxes(x, 0, 1).reshape((M, k * n // M) + x.shape[3:])
    return {name: split(name, x) for name, x in batch.items()}


def reference_fields(reference: Callable, ref_model, micro_batches: dict[str, Array]) -> dict[str, Array]:
    """The reference fields of stacked micro-batches [M, ...], one micro-batch at a time (M reference forwards
    never coexist), under stop_gradient. The one reference pass: the step and `reference_table` both call it."""
    return jax.lax.stop_gradient(jax.lax.map(lambda mb: reference(ref_model, mb), micro_batches))


def make_train_step(objective: Callable[..., Loss], tx: optax.GradientTransformation, *, graphdef,
                    state_sharding: TrainState, mesh: Mesh, num_micro_batches: int = 1,
                    reference: Callable | None = None, global_fields: Callable | None = None,
                    row_blocks: int = 1, reference_is_base: bool = False):
    """`step_fn(state, batch, ref_params) -> (state, metrics)`, jitted once with explicit shardings; the state is
    donated (its buffers are reused for the new state, so params and moments exist once in memory).

    objective(model, micro_batch) -> Loss          (a methods.METHODS row's objective with its params bound)
    reference(ref_model, micro_batch) -> fields     (the row's reference) under stop_gradient from the frozen
                                                    `ref_params`; None when the batch carries them (cached)
    global_fields(model, micro_batches) -> fields   computed over all M micro-batches before the loss (KTO's z0)
    row_blocks: 2 for DPO, whose token rows stack [chosen; rejected] (split_micro_batches)
    reference_is_base: a LoRA run's π_ref is the policy with its adapters off (lora.adapter_off), computed from the
                    state itself; `ref_params` is then ignored (pass None)

    Only the trainable part of the params is differentiated and updated (models/lora.split_trainable): every
    parameter, or with LoRA the adapters (and any head built around the decoder) while the base stays frozen.

    Each step splits the state's key: one half carries on, the other, folded with the micro-batch index, is the
    micro-batch's "rng" field (a [2] uint32 key) for objectives that draw randomness (adapter dropout).
    """
    M = num_micro_batches
    rows_sharding = NamedSharding(mesh, PartitionSpec(None, BATCH_AXES))

    def train_step(state: TrainState, batch: dict[str, Array], ref_params):
        # The decoder's block-boundary constraints (sharding.constrain) resolve against this mesh.
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return _train_step(state, batch, ref_params)

    def _train_step(state: TrainState, batch: dict[str, Array], ref_params):
        mbs = split_micro_batches(batch, M, row_blocks)
        mbs = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, _rows_spec(x, rows_sharding)), mbs)
        rng, step_key = jax.random.split(state.rng)
        mbs["rng"] = jax.vmap(lambda m: jax.random.fold_in(step_key, m))(jnp.arange(M))
        if reference is not None:
            ref = lora.adapter_off(state.params) if reference_is_base else ref_params
            mbs |= reference_fields(reference, nnx.merge(graphdef, ref), mbs)
        if global_fields is not None:
            extra = global_fields(nnx.merge(graphdef, state.params), mbs)
            mbs |= {k: jnp.broadcast_to(v, (M,) + v.shape) for k, v in extra.items()}
        trainable, frozen = lora.split_trainable(state.params)

        def sum_loss(trainable, mb):       # differentiate the SUM; divide once by the global count below
            model = nnx.merge(graphdef, lora.join(trainable, frozen))
            lora.set_dropout_key(model, mb["rng"])          # a no-op without adapter dropout
            loss = objective(model, mb)
            return loss.total, loss

        def body(g_sum, mb):
            (_, loss), g = jax.value_and_grad(sum_loss, has_aux=True)(trainable, mb)
            g_sum = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), g_sum, g)
            return g_sum, loss

        # float32 accumulators whatever the parameter dtype: M bf16 additions would round M times.
        g_zero = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), trainable)
        g_sum, loss_M = jax.lax.scan(body, g_zero, mbs)
        # Sums (and maxima) over the global batch, then one division per metric: a metric with no rows in some
        # micro-batches (KTO's rejected side) is averaged over the rows of the others, and is NaN when no
        # micro-batch has any (Loss.metric_means; the metrics log omits it). Averaging per-micro-batch means would
        # weigh unequal micro-batches alike and count an empty one as 0.
        loss = loss_M.combine()
        n = jnp.maximum(loss.count.astype(jnp.float32), 1.0)
        grads = jax.tree.map(lambda g, p: (g * (1.0 / n)).astype(p.dtype), g_sum, trainable)
        # A product and a norm taken from the sum: a quotient or a reduction over `grads` would make XLA write
        # them out whole beside g_sum (clip_by_global_norm above).
        grad_norm = optax.tree.norm(g_sum) / n
        updates, opt_state = tx.update(grads, state.opt_state, trainable, global_norm=grad_norm)
        params = lora.join(optax.apply_updates(trainable, updates), frozen)
        metrics = {"loss": loss.total / n, "count": n, "grad_norm": grad_norm, **loss.metric_means()}
        return TrainState(state.step + 1, params, opt_state, rng), metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    ref_sharding = state_sharding.params if reference is not None and not reference_is_base else replicated
    return jax.jit(train_step, in_shardings=(state_sharding, batch_sharding(mesh), ref_sharding),
                   out_shardings=(state_sharding, replicated), donate_argnums=0)


def _rows_spec(x: Array, rows_sharding: NamedSharding) -> NamedSharding:
    """Micro-batch rows over data x fsdp when they divide; replicated otherwise (tiny CPU micro-batches)."""
    if x.ndim < 2 or x.shape[1] % batch_ways(rows_sharding.mesh):
        return NamedSharding(rows_sharding.mesh, PartitionSpec())
    return rows_sharding


def reference_table(path, reference: Callable, graphdef, ref_params, mesh: Mesh, batches, steps: int, *,
                    num_micro_batches: int = 1, row_blocks: int = 1) -> dict[str, np.ndarray]:
    """The reference fields of the first `steps` batches, stacked [steps, ...]: computed once, micro-batch by
    micro-batch as the step would, saved to `path` (name it by a fingerprint of model and data), and read back by
    any later run with the same path (process 0 writes it). Training then passes no reference params to the step.
    `batches` is a fixed BatchSource (data/examples.py) at position 0; the table holds every row of each batch on
    every process (the step's rows of a per-host source are then read with its share: train.py)."""
    path = pathlib.Path(path)
    # Every process must take the same branch (the computation below is one multi-host jit): the table is read
    # back only when every process sees the file.
    if _on_every_process(path.exists()):
        return dict(np.load(path))

    def fields_of(params, batch):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            model = nnx.merge(graphdef, params)
            out = reference_fields(reference, model, split_micro_batches(batch, num_micro_batches, row_blocks))
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in out.items()}     # [M, B/M] -> [B], rows in order

    run = jax.jit(fields_of, in_shardings=(tree_shardings(ref_params, mesh), batch_sharding(mesh)))
    share = getattr(batches, "share", RowShare())
    fields = [jax.tree.map(fetch_global, run(ref_params, place_batch(batches.next(), mesh, share)))
              for _ in range(steps)]
    table = {k: np.stack([f[k] for f in fields]) for k in fields[0]}
    if jax.process_index() == 0:          # one writer; the other processes keep the table they computed
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **table)
    return table


def _on_every_process(flag: bool) -> bool:
    """True when `flag` is true on every process (a single process: the flag itself)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(np.all(multihost_utils.process_allgather(np.asarray(flag))))
