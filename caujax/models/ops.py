"""The one matmul every projection uses (decoder layers, LoRA adapters)."""
from __future__ import annotations

import math

import jax.numpy as jnp


def dense(x, w, contract: int = 1):
    """Contract the last `contract` axes of x with the first `contract` axes of w, as one 2-D matmul.

    Same math as the einsum (float32 accumulation whatever the input dtype), but XLA:CPU sends a plain
    [rows, k] @ [k, cols] product (and its gradients) to its fast GEMM, while a contraction over batch-like axes
    (the weight gradient of "BTD,DF->BTF" sums over B and T) takes a slower path: 2x on the MLP's forward+backward
    on CPU. Sharding is unaffected: merged axes keep their leading axis's sharding."""
    lead, k = x.shape[: x.ndim - contract], math.prod(x.shape[x.ndim - contract:])
    # bfloat16 inputs accumulate in float32 (mixed precision), then round once to the activation dtype.
    y = jnp.matmul(x.reshape(-1, k), w.reshape(k, -1), preferred_element_type=jnp.float32).astype(x.dtype)
    return y.reshape(*lead, *w.shape[contract:])
