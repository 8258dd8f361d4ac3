"""Meshes over ("data", "fsdp", "tensor"), the logical-axis rules for training and sampling, and constrain().

Parameters carry logical axis names (decoder.py); these tables map them to mesh axes. A dimension that its mesh
axes do not divide (e.g. one kv head on a 2-way tensor axis) is replicated rather than refused.
"""
from __future__ import annotations

import contextlib
import math

import jax
import numpy as np
from flax import nnx
from flax.core import spmd
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXES = ("data", "fsdp", "tensor")

TRAIN_RULES = (
    ("batch", ("data", "fsdp")), ("embed", "fsdp"), ("heads", "tensor"), ("kv_heads", "tensor"),
    ("mlp", "tensor"), ("vocab", "tensor"), ("head_dim", None), ("seq", None), ("norm", None), ("layers", None),
)
# Sampling keeps whole weights on each data shard (no fsdp gather per decoded token): batch and KV cache over
# data/fsdp, heads over tensor (Tunix/Flax get_default_sharding(is_sampling=True) make the same split).
SAMPLE_RULES = (
    ("batch", ("data", "fsdp")), ("embed", None), ("heads", "tensor"), ("kv_heads", "tensor"),
    ("mlp", "tensor"), ("vocab", "tensor"), ("head_dim", None), ("seq", None), ("norm", None), ("layers", None),
)


BATCH_AXES = ("data", "fsdp")     # mesh axes that batch rows are split over (the "batch" rule)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Every batch field is split by rows over data x fsdp (a prefix sharding, so it fits any rank)."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def batch_ways(mesh: Mesh | None) -> int:
    """How many ways batch rows are split: the data x fsdp device count (1 without a mesh)."""
    return 1 if mesh is None else math.prod(mesh.shape[a] for a in BATCH_AXES)


def variable_sharder(mesh: Mesh | None, rules=None):
    """For the checkpoint loaders: Variable -> its NamedSharding on `mesh` (TRAIN_RULES by default), or None
    when there is no mesh and tensors stay on the default device."""
    if mesh is None:
        return None
    return lambda var: variable_sharding(var, mesh, rules or TRAIN_RULES)


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh with Auto axes (jax's default Explicit axes break sharding constraints).
    One of the sizes may be -1: it takes the devices the others leave."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got data={data} fsdp={fsdp} tensor={tensor}")
    if -1 in sizes:
        rest = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = len(devices) // rest
    if math.prod(sizes) != len(devices) and math.prod(sizes) > len(devices):
        raise ValueError(f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} = {math.prod(sizes)} "
                         f"needs more devices than the {len(devices)} available")
    processes = len({d.process_index for d in devices})
    if math.prod(sizes) < len(devices) and processes > 1:
        # A process left out of the mesh could neither place its rows nor fetch a result (it crashes, then the
        # others wait minutes on JAX's shutdown barrier).
        raise ValueError(f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} = {math.prod(sizes)} devices, "
                         f"but this {processes}-process run has {len(devices)}: a multi-process mesh must cover "
                         f"every process's devices (set the sizes to multiply to {len(devices)}, or one to -1)")
    grid = np.asarray(devices[: math.prod(sizes)]).reshape(sizes)
    return Mesh(grid, AXES, axis_types=(AxisType.Auto,) * len(AXES))


def logical_spec(axes, rules, shape=None, mesh: Mesh | None = None) -> PartitionSpec:
    """PartitionSpec for logical axis names; with shape and mesh, dims the mesh does not divide are replicated."""
    table = dict(rules)
    out, used = [], set()
    for i, name in enumerate(axes or ()):
        if name is not None and name not in table:
            raise KeyError(f"logical axis {name!r} has no rule; known: {sorted(table)}")
        target = None if name is None else table[name]
        names = () if target is None else (target if isinstance(target, tuple) else (target,))
        if used & set(names):          # a mesh axis can shard one dimension only: the first one claiming it wins
            target, names = None, ()
        if names and shape is not None and mesh is not None and shape[i] % math.prod(mesh.shape[n] for n in names):
            target, names = None, ()
        used |= set(names)
        out.append(target)
    return PartitionSpec(*out)


def variable_sharding(var: nnx.Variable, mesh: Mesh, rules=TRAIN_RULES) -> NamedSharding:
    """The NamedSharding of one Variable (abstract or concrete), from its logical `out_sharding` names."""
    return NamedSharding(mesh, logical_spec(var.get_metadata().get("out_sharding"), rules, var.shape, mesh))


def tree_shardings(tree, mesh: Mesh, rules=TRAIN_RULES):
    """A NamedSharding for every leaf of a tree of nnx Variables and arrays (an nnx.State, optimizer state, a
    TrainState): Variables by their logical names (optax's moments keep the Param metadata), anything else
    replicated. The result has the tree's own structure, so it serves jax.jit's in/out_shardings, jax.device_put
    and orbax's restore targets alike."""
    def one(x):
        if isinstance(x, nnx.Variable):
            return x.replace(variable_sharding(x, mesh, rules))
        return NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(one, tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model, mesh: Mesh, rules=TRAIN_RULES):
    """Place every parameter of `model` on `mesh` by its logical names (in place); returns the model."""
    graphdef, state = nnx.split(model)
    values = jax.tree.map(lambda v: jax.device_put(v[...], variable_sharding(v, mesh, rules)), state,
                          is_leaf=lambda x: isinstance(x, nnx.Variable))
    nnx.update(model, values)
    return model


@contextlib.contextmanager
def use_rules(rules):
    """Rules that constrain() resolves logical names with (also flax's own logical-rule context)."""
    with spmd.logical_axis_rules(rules):
        yield


def constrain(x, *axes):
    """with_sharding_constraint by logical names under the active mesh and rules; a no-op on one device or
    outside a mesh, so CPU tests and single-device runs pay nothing."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return x
    rules = spmd.get_logical_axis_rules() or TRAIN_RULES
    spec = logical_spec(axes, rules, x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, spec)


def put_global(array, sharding: NamedSharding) -> jax.Array:
    """Host array -> global jax.Array. Each host holds the same full array and materialises only the shards of its
    own devices: one code path for one CPU and a multi-host pod, where device_put cannot reach other hosts."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda idx: array[idx])


def row_share(mesh: Mesh):
    """This process's part of every batch (data.batches.RowShare): the row blocks its devices hold along data x
    fsdp, when they are one contiguous part (RowShare.of_blocks); otherwise all rows, which every host then builds
    in full and places with put_global. Every process must call it: they agree on the split (all hosts per-host,
    or none), since one global array cannot be built partly from parts and partly from whole copies."""
    from caujax.data.batches import RowShare

    ways = batch_ways(mesh)
    indices = batch_sharding(mesh).addressable_devices_indices_map((ways,)).values()
    share = RowShare.of_blocks([index[0].indices(ways)[0] for index in indices], ways)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        counts = np.asarray(multihost_utils.process_allgather(np.asarray(share.count)))
        if np.any(counts != share.count):
            return RowShare()
    return share


def put_local(array, sharding: NamedSharding, parts: int) -> jax.Array:
    """This process's contiguous rows (one of `parts` equal parts of dimension 0) -> the global jax.Array."""
    array = np.asarray(array)
    return jax.make_array_from_process_local_data(sharding, array, (array.shape[0] * parts,) + array.shape[1:])


def sum_over_processes(value: int) -> int:
    """The sum of an int over all processes (each must call it); the value itself in a one-process run."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    return int(np.sum(multihost_utils.process_allgather(np.asarray(value))))


def fetch_global(x) -> np.ndarray:
    """Global (possibly multi-host) jax.Array -> full numpy copy on every host (all hosts must call it)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
