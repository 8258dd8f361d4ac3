"""Attention kernels behind one signature: the plain form, a blockwise (flash-style) form, and jax.nn's fused one.

All three compute softmax(softcap(q·k * scale) masked) · v with the decoder's visibility rule: a key is visible to a
query when both belong to the same segment (segment 0 marks padding and empty cache slots and sees nothing), the
key's position is <= the query's, and, on sliding-window layers, q_pos - k_pos < window. Shapes follow decoder.py:
q_BTKGH (G query heads per kv head), k_BSKH, v_BSKH; positions and segments are int32 [B, T] / [B, S].

- "plain" materialises the [B, K, G, T, S] float32 scores: the reference form, and what a decoded token uses
  against a ring-buffer cache or a by-column one of at most one block (otherwise decode_attention.py).
- "blockwise" never holds more than [B, K, G, block, block] scores: the online-softmax recurrence of FlashAttention
  (Dao et al. 2022, Alg. 1) over key blocks, with its recomputing backward pass (Alg. 2 / FlashAttention-2 Alg. 2)
  as a custom VJP, so the backward keeps only q, k, v, the output and the [B, K, G, T] log-sum-exp. When the keys
  are the queries themselves (`self_causal`: training and prefill), key blocks wholly after a query block are
  skipped: visibility implies key index <= query index because positions grow with the index inside a segment.
- "dot_product" is jax.nn.dot_product_attention (implementation=None: jax picks cuDNN where it can, else the XLA
  form, which materialises the scores); it has no logit softcap, so models with one fall back to "blockwise".
- "splash" is the TPU Pallas splash-attention kernel (models/splash.py) for the self-causal case (other calls fall
  back to "blockwise"; decoding with the sampler's cache reads its filled columns, decoder.decode_reads_filled);
  off TPU it runs in Pallas interpret mode, for tests. Opt-in until measured on a TPU.

A query that sees no key at all (padding, segment 0) gets the mean of the values it scanned in the forward and a
zero gradient in the blockwise backward: its output is never read (pads are never keys and their log-probs are
masked), so its cotangent is 0 and the two agree where it matters.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from caujax.models.config import IMPLS
from caujax.models.config import AttentionImpl as Impl

_NEG = -0.7 * float(jnp.finfo(jnp.float32).max)   # finite, so fully masked rows (pad queries) stay NaN-free


def visible(q_pos_BT, k_pos_BS, q_seg_BT, k_seg_BS, is_local, window: int | None):
    """[B, T, S] bool: the decoder's visibility rule (module docstring). `is_local` may be traced."""
    q_pos, k_pos = q_pos_BT[:, :, None], k_pos_BS[:, None, :]
    ok = (k_seg_BS[:, None, :] > 0) & (k_seg_BS[:, None, :] == q_seg_BT[:, :, None]) & (k_pos <= q_pos)
    if window:
        ok &= jnp.where(is_local, q_pos - k_pos < window, True)
    return ok


def resolve(impl: Impl, T: int, S: int, softcap: float | None) -> str:
    """The kernel "auto" stands for: the plain form for one decoded token (but over the sampler's cache longer than
    one block, decoder.decode_reads_filled picks models/decode_attention.py), blockwise otherwise, on every backend (on
    CPU its custom backward made the 8 x 512 forward + backward 1.17x faster than autodiff of the plain form,
    bench/README.md). "dot_product" is opt-in: jax.nn.dot_product_attention with implementation=None, which jax
    0.10 runs as the XLA form (T x T scores, autodiff backward) unless it picks cuDNN, so it is not the default on
    GPU until measured there; with a softcap (which jax.nn cannot apply) it becomes "blockwise"."""
    if impl not in IMPLS:
        raise ValueError(f"unknown attention {impl!r}; expected one of {IMPLS}")
    if impl == "auto":
        impl = "plain" if T == 1 else "blockwise"
    if impl == "dot_product" and softcap:
        impl = "blockwise"
    return impl


def attend(q_BTKGH, k_BSKH, v_BSKH, q_pos_BT, k_pos_BS, q_seg_BT, k_seg_BS, *, scale: float,
           softcap: float | None = None, window: int | None = None, is_local=False, impl: Impl = "plain",
           self_causal: bool = False, block: int = 256):
    """Attention output o_BTKGH in the dtype of q. `self_causal` promises the keys are the queries (T == S, same
    order), which lets the blockwise form skip key blocks after each query block."""
    T, S = q_BTKGH.shape[1], k_BSKH.shape[1]
    impl = resolve(impl, T, S, softcap)
    if impl == "plain":
        return _plain(q_BTKGH, k_BSKH, v_BSKH, visible(q_pos_BT, k_pos_BS, q_seg_BT, k_seg_BS, is_local, window),
                      scale, softcap)
    if impl == "splash":
        if self_causal and T == S:
            from caujax.models.splash import splash     # Pallas imported only when asked for
            return splash(q_BTKGH, k_BSKH, v_BSKH, q_seg_BT, k_seg_BS, is_local, scale=scale, softcap=softcap,
                          window=window, block=block)
        impl = "blockwise"
    if impl == "dot_product":
        B, _, K, G, H = q_BTKGH.shape
        mask_B1TS = visible(q_pos_BT, k_pos_BS, q_seg_BT, k_seg_BS, is_local, window)[:, None]
        out = jax.nn.dot_product_attention(q_BTKGH.reshape(B, T, K * G, H), k_BSKH, v_BSKH, mask=mask_B1TS,
                                           scale=scale)
        return out.reshape(q_BTKGH.shape)
    return _blockwise(q_BTKGH, k_BSKH, v_BSKH, q_pos_BT, k_pos_BS, q_seg_BT, k_seg_BS,
                      jnp.asarray(is_local, bool), scale, softcap, window, self_causal and T == S, block)


def _plain(q_BTKGH, k_BSKH, v_BSKH, visible_BTS, scale, softcap):
    s_BKGTS = jnp.einsum("BTKGH,BSKH->BKGTS", q_BTKGH, k_BSKH, preferred_element_type=jnp.float32) * scale
    if softcap:
        s_BKGTS = jnp.tanh(s_BKGTS / softcap) * softcap
    s_BKGTS = jnp.where(visible_BTS[:, None, None], s_BKGTS, _NEG)
    p_BKGTS = jax.nn.softmax(s_BKGTS, axis=-1).astype(v_BSKH.dtype)
    return jnp.einsum("BKGTS,BSKH->BTKGH", p_BKGTS, v_BSKH, preferred_element_type=jnp.float32).astype(q_BTKGH.dtype)


# --- blockwise ------------------------------------------------------------------------------------------------------
def _pad_to(x, axis: int, size: int, value=0):
    extra = size - x.shape[axis]
    if extra == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths, constant_values=value)


def _blockwise(q, k, v, q_pos, k_pos, q_seg, k_seg, is_local, scale, softcap, window, self_causal, block):
    T, S = q.shape[1], k.shape[1]
    bq, bk = min(block, T), min(block, S)
    Tp, Sp = -(-T // bq) * bq, -(-S // bk) * bk
    # Padded queries and keys get segment 0: they see nothing and nobody sees them; padded outputs are cut off.
    q, q_pos, q_seg = _pad_to(q, 1, Tp), _pad_to(q_pos, 1, Tp), _pad_to(q_seg, 1, Tp)
    k, v, k_pos, k_seg = _pad_to(k, 1, Sp), _pad_to(v, 1, Sp), _pad_to(k_pos, 1, Sp), _pad_to(k_seg, 1, Sp)
    static = (float(scale), softcap, window, bool(self_causal), bq, bk)
    return _flash(static, q, k, v, q_pos, k_pos, q_seg, k_seg, is_local)[:, :T]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(static, q, k, v, q_pos, k_pos, q_seg, k_seg, is_local):
    return _flash_fwd(static, q, k, v, q_pos, k_pos, q_seg, k_seg, is_local)[0]


def _scores(static, q_i, k_j, q_pos_i, k_pos_j, q_seg_i, k_seg_j, is_local):
    """Scores [B, K, G, bq, bk] float32 of one block pair, the raw tanh for the softcap's derivative, visibility."""
    scale, softcap, window = static[:3]
    s = jnp.einsum("BTKGH,BSKH->BKGTS", q_i, k_j, preferred_element_type=jnp.float32) * scale
    t = None
    if softcap:
        t = jnp.tanh(s / softcap)
        s = t * softcap
    vis = visible(q_pos_i, k_pos_j, q_seg_i, k_seg_j, is_local, window)[:, None, None]
    return jnp.where(vis, s, _NEG), t, vis


def _online_softmax_step(m, l, acc, s, v_j):
    """FlashAttention's recurrence (Dao et al. 2022, Alg. 1) for one key block: running max m and sum l [..., T] and
    the unnormalised output acc [..., T, H] updated by scores s [B, K, G, T, S] (masked: _NEG) and values v_j."""
    m_new = jnp.maximum(m, s.max(-1))
    p = jnp.exp(s - m_new[..., None])
    rescale = jnp.exp(m - m_new)
    acc = acc * rescale[..., None] + jnp.einsum("BKGTS,BSKH->BKGTH", p.astype(v_j.dtype), v_j,
                                                preferred_element_type=jnp.float32)
    return m_new, l * rescale + p.sum(-1), acc


def _key_blocks(static, i, num_k):
    """Key blocks that query block i reads: all, or (self-causal) those starting before the block's end."""
    _, _, _, self_causal, bq, bk = static
    return jnp.minimum(-(-((i + 1) * bq) // bk), num_k) if self_causal else num_k


def _slice(x, start, size):
    return jax.lax.dynamic_slice_in_dim(x, start, size, axis=1)


def _flash_fwd(static, q, k, v, q_pos, k_pos, q_seg, k_seg, is_local):
    bq, bk = static[4:]
    B, Tp, K, G, H = q.shape
    num_q, num_k = Tp // bq, k.shape[1] // bk

    def q_block(i):
        q_i, qp_i, qs_i = _slice(q, i * bq, bq), _slice(q_pos, i * bq, bq), _slice(q_seg, i * bq, bq)

        def body(j, carry):
            k_j, v_j = _slice(k, j * bk, bk), _slice(v, j * bk, bk)
            s, _, _ = _scores(static, q_i, k_j, qp_i, _slice(k_pos, j * bk, bk), qs_i, _slice(k_seg, j * bk, bk),
                              is_local)
            return _online_softmax_step(*carry, s, v_j)

        init = (jnp.full((B, K, G, bq), _NEG, jnp.float32), jnp.zeros((B, K, G, bq), jnp.float32),
                jnp.zeros((B, K, G, bq, H), jnp.float32))
        m, l, acc = jax.lax.fori_loop(0, _key_blocks(static, i, num_k), body, init)
        return acc / l[..., None], m + jnp.log(l)

    o_QBKGTH, lse_QBKGT = jax.lax.map(q_block, jnp.arange(num_q))
    o = jnp.moveaxis(o_QBKGTH, 0, 3).reshape(B, K, G, Tp, H)      # [B, K, G, Tp, H]
    lse = jnp.moveaxis(lse_QBKGT, 0, 3).reshape(B, K, G, Tp)
    out = jnp.einsum("BKGTH->BTKGH", o).astype(q.dtype)
    return out, (q, k, v, q_pos, k_pos, q_seg, k_seg, is_local, out, lse)


def _flash_bwd(static, res, dout):
    q, k, v, q_pos, k_pos, q_seg, k_seg, is_local, out, lse = res
    softcap, bq, bk = static[1], static[4], static[5]
    scale = static[0]
    B, Tp, K, G, H = q.shape
    num_q, num_k = Tp // bq, k.shape[1] // bk
    # FlashAttention-2's D_i = rowsum(dO ∘ O): the softmax backward's correction term.
    delta = jnp.einsum("BTKGH,BTKGH->BKGT", dout.astype(jnp.float32), out.astype(jnp.float32))

    def q_block(carry, i):
        dk, dv = carry
        q_i, do_i = _slice(q, i * bq, bq), _slice(dout, i * bq, bq)
        qp_i, qs_i = _slice(q_pos, i * bq, bq), _slice(q_seg, i * bq, bq)
        lse_i = jax.lax.dynamic_slice_in_dim(lse, i * bq, bq, axis=3)
        delta_i = jax.lax.dynamic_slice_in_dim(delta, i * bq, bq, axis=3)

        def body(j, inner):
            dq_i, dk, dv = inner
            k_j, v_j = _slice(k, j * bk, bk), _slice(v, j * bk, bk)
            s, t, vis = _scores(static, q_i, k_j, qp_i, _slice(k_pos, j * bk, bk), qs_i, _slice(k_seg, j * bk, bk),
                                is_local)
            p = jnp.where(vis, jnp.exp(s - lse_i[..., None]), 0.0)
            dv_j = jnp.einsum("BKGTS,BTKGH->BSKH", p.astype(do_i.dtype), do_i, preferred_element_type=jnp.float32)
            dp = jnp.einsum("BTKGH,BSKH->BKGTS", do_i, v_j, preferred_element_type=jnp.float32)
            ds = p * (dp - delta_i[..., None])
            if softcap:
                ds = ds * (1.0 - t * t)        # d(c·tanh(x/c))/dx
            ds = (ds * scale).astype(q.dtype)
            dq_i = dq_i + jnp.einsum("BKGTS,BSKH->BTKGH", ds, k_j, preferred_element_type=jnp.float32)
            dk_j = jnp.einsum("BKGTS,BTKGH->BSKH", ds, q_i, preferred_element_type=jnp.float32)
            dk = jax.lax.dynamic_update_slice_in_dim(dk, _slice(dk, j * bk, bk) + dk_j, j * bk, axis=1)
            dv = jax.lax.dynamic_update_slice_in_dim(dv, _slice(dv, j * bk, bk) + dv_j, j * bk, axis=1)
            return dq_i, dk, dv

        dq_i = jnp.zeros(q_i.shape, jnp.float32)
        dq_i, dk, dv = jax.lax.fori_loop(0, _key_blocks(static, i, num_k), body, (dq_i, dk, dv))
        return (dk, dv), dq_i

    zeros_kv = jnp.zeros(k.shape, jnp.float32)
    (dk, dv), dq_QBTKGH = jax.lax.scan(q_block, (zeros_kv, zeros_kv), jnp.arange(num_q))
    dq = jnp.moveaxis(dq_QBTKGH, 0, 1).reshape(q.shape)
    ints = tuple(_float0(x) for x in (q_pos, k_pos, q_seg, k_seg, is_local))
    return (dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), *ints)


def _float0(x):
    """The cotangent of an integer or boolean input."""
    return np.zeros(x.shape, jax.dtypes.float0)


def _flash_fwd_rule(static, q, k, v, q_pos, k_pos, q_seg, k_seg, is_local):
    return _flash_fwd(static, q, k, v, q_pos, k_pos, q_seg, k_seg, is_local)


_flash.defvjp(_flash_fwd_rule, _flash_bwd)
