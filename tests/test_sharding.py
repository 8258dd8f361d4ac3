"""make_mesh, the logical-axis rules and constrain()."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AxisType, PartitionSpec as P

from caujax.sharding import SAMPLE_RULES, TRAIN_RULES, constrain, logical_spec, make_mesh


def test_make_mesh_shapes_and_auto_axes():
    mesh = make_mesh(data=2, fsdp=-1, tensor=2)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert all(t == AxisType.Auto for t in mesh.axis_types)
    with pytest.raises(ValueError, match="needs more devices"):
        make_mesh(data=4, fsdp=4)


def test_logical_spec_rules_divisibility_and_no_duplicate_axes():
    mesh = make_mesh(2, 2, 2)
    assert logical_spec(("embed", "heads", "head_dim"), TRAIN_RULES) == P("fsdp", "tensor", None)
    assert logical_spec(("embed", "heads", "head_dim"), SAMPLE_RULES) == P(None, "tensor", None)
    # one kv head cannot split over a 2-way tensor axis: replicated, not refused
    assert logical_spec(("embed", "kv_heads", "head_dim"), TRAIN_RULES, (32, 1, 8), mesh) == P("fsdp", None, None)
    # batch takes data+fsdp first, so embed may not reuse fsdp
    assert logical_spec(("batch", "seq", "embed"), TRAIN_RULES) == P(("data", "fsdp"), None, None)
    with pytest.raises(KeyError, match="no rule"):
        logical_spec(("nonsense",), TRAIN_RULES)


def test_constrain_is_a_noop_on_one_device_and_shards_on_a_mesh():
    x = jnp.ones((8, 4, 16))
    assert constrain(x, "batch", "seq", None) is x
    mesh = make_mesh(2, 2, 2)
    with jax.set_mesh(mesh):
        y = jax.jit(lambda a: constrain(a * 2, "batch", "seq", None))(x)
    expected = jax.sharding.NamedSharding(mesh, P(("data", "fsdp"), None, None))
    assert y.sharding.is_equivalent_to(expected, x.ndim)
