"""Splash attention (jax.experimental.pallas.ops.tpu.splash_attention): the TPU Pallas flash-attention kernel that
skips fully masked blocks, behind attention.attend's signature as impl="splash".

It serves the self-causal case only (training and a prefill without a cache: the keys are the queries, T == S);
attend falls back to the blockwise form otherwise. Its masks are by index, not by position: causal (key index <=
query index) and, on sliding-window layers, a left window of `window - 1` keys; segment ids keep packed documents
apart. That is the decoder's visibility rule whenever positions count up by one inside each segment, as
decoder.default_mask_positions makes them (left or right padding, packing); padding is segment 0, which no real
query sees (pad queries here see pad keys, so their outputs differ from the other kernels'; they are never read).
Rows are padded to a multiple of the kernel's block: attention_block rounded down to a multiple of 128 (the TPU
lane width), at least 128.

Off TPU the kernel runs in Pallas interpret mode: exact but slow, for the parity tests on CPU (tests/
test_attention.py); `auto` never picks it. Under a mesh (the train step's abstract mesh) the kernel runs per shard
through jax.shard_map: rows over the batch axes, kv heads over "tensor" where they divide, as the decoder's
activations are split; XLA cannot partition the Pallas call itself. A dimension the mesh does not divide is not
split (sharding.logical_spec): still exact, but every shard then computes all of it. Not yet measured on a TPU.
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
from flax.core import spmd
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel_lib
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib

from caujax.sharding import TRAIN_RULES, logical_spec

LANES = 128      # the kernel's blocks are multiples of the TPU lane width


def splash(q_BTKGH, k_BSKH, v_BSKH, q_seg_BT, k_seg_BS, is_local, *, scale: float, softcap: float | None,
           window: int | None, block: int):
    """o_BTKGH (the dtype of q) for self-causal attention; shapes as attention.attend. `is_local` may be traced (the
    layer scan's flag): both masks are compiled and lax.cond runs one."""
    B, T, K, G, H = q_BTKGH.shape
    bs = min(max(LANES, block // LANES * LANES), -(-T // LANES) * LANES)
    Tp = -(-T // bs) * bs
    pad = lambda x: jnp.pad(x, [(0, 0), (0, Tp - T)] + [(0, 0)] * (x.ndim - 2))   # segment 0: seen by no one
    args = (pad(q_BTKGH * jnp.asarray(scale, q_BTKGH.dtype)), pad(k_BSKH), pad(v_BSKH), pad(q_seg_BT),
            pad(k_seg_BS), jnp.asarray(is_local, bool))
    run = functools.partial(_run, G=G, Tp=Tp, bs=bs, softcap=softcap, window=window,
                            interpret=jax.default_backend() != "tpu")
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        out = run(*args)
    else:
        rules = spmd.get_logical_axis_rules() or TRAIN_RULES
        q_spec = logical_spec(("batch", None, "kv_heads", None, None), rules, args[0].shape, mesh)
        kv_spec = jax.sharding.PartitionSpec(*q_spec[:3], None)
        seg_spec = jax.sharding.PartitionSpec(q_spec[0], None)
        out = jax.shard_map(run, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec, seg_spec, seg_spec,
                                                      jax.sharding.PartitionSpec()),
                            out_specs=q_spec, check_vma=False)(*args)
    return out[:, :T].astype(q_BTKGH.dtype)


def _run(q_BTKGH, k_BSKH, v_BSKH, q_seg_BT, k_seg_BS, is_local, *, G, Tp, bs, softcap, window, interpret):
    """The kernel over one shard: vmapped over rows and kv heads, G query heads per kv head (the MQA kernel)."""
    if interpret:
        _warn_interpret()
    sizes = kernel_lib.BlockSizes(block_q=bs, block_kv=bs, block_kv_compute=bs, block_q_dkv=bs, block_kv_dkv=bs,
                                  block_kv_dkv_compute=bs, block_q_dq=bs, block_kv_dq=bs)

    def kernel(mask):
        return kernel_lib.make_splash_mqa_single_device(mask_lib.MultiHeadMask([mask] * G), block_sizes=sizes,
                                                        attn_logits_soft_cap=softcap, interpret=interpret)

    def apply(kern):
        per_row = lambda q_KGTH, k_KSH, v_KSH, q_seg_T, k_seg_S: jax.vmap(kern, in_axes=(0, 0, 0, None))(
            q_KGTH, k_KSH, v_KSH, kernel_lib.SegmentIds(q=q_seg_T, kv=k_seg_S))
        return jax.vmap(per_row)(q_BTKGH.transpose(0, 2, 3, 1, 4), k_BSKH.transpose(0, 2, 1, 3),
                                 v_BSKH.transpose(0, 2, 1, 3), q_seg_BT, k_seg_BS)

    causal = kernel(mask_lib.CausalMask((Tp, Tp)))
    if window:
        local = kernel(mask_lib.LocalMask((Tp, Tp), window_size=(window - 1, 0), offset=0))
        out_BKGTH = jax.lax.cond(is_local, lambda: apply(local), lambda: apply(causal))
    else:
        out_BKGTH = apply(causal)
    return out_BKGTH.transpose(0, 3, 1, 2, 4)


@functools.cache
def _warn_interpret():
    warnings.warn("attention='splash' off TPU runs the Pallas kernel in interpret mode (exact, slow: for tests); "
                  "use 'auto' or 'blockwise' on CPU and GPU", stacklevel=3)
