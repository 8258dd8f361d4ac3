"""One Flax NNX decoder for Llama 3.x, Qwen2/2.5 (and DeepSeek-R1-Distill), Qwen3 and Gemma 3.

Family differences are ModelConfig fields (qkv_bias, qk_norm, sandwich_norms, ...); no layer tests the family.

Axis letters used in names and einsums:
  B batch, T query length, S key length (cache slots + new tokens), V vocabulary, D model width,
  N query heads, K key/value heads, G query heads per kv head (N = K * G), H head dim, F MLP width.

Masking is by position, not by array index: a key is visible to a query when it is a real token of the query's
segment (mask or filled cache slot), its position is <= the query's, and, on sliding-window layers,
q_pos - k_pos < sliding_window. Left padding, right padding, packed rows and ring-buffer caches all reduce to that
rule. mask_BT doubles as the segment id: 0 is padding, 1 an ordinary row, 1, 2, 3, ... the documents of a packed
row (data/packing.py); positions restart at 0 in each segment. A segment is contiguous and neighbouring segments
have different ids (a 0/1 mask with a hole inside a row would restart positions after the hole). Caches and the
ring-buffer writes expect 0/1 masks. models/attention.py holds the kernels.

Layers are stacked: every Block parameter has a leading layer axis L (logical name "layers"), and one compiled
block is applied by jax.lax.scan, so compile time does not grow with depth. What differs between layers (Gemma 3's
sliding-window flag and RoPE frequencies) is data fed to the scan, not Python structure. cfg.scan_layers=False runs
the same stacked parameters in a Python loop (tests compare the two).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from caujax.models.attention import attend
from caujax.models.decode_attention import DECODE_BLOCK, decode_attend
from caujax.models.config import ModelConfig
from caujax.models.lora import adapters_of, project
from caujax.sharding import constrain

# jax.checkpoint policy per ModelConfig.remat (models/config.py REMAT_POLICIES says what each keeps); "full" is
# jax's default: nothing saveable but the block's arguments.
_REMAT = {"full": None, "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
          "save_attention": jax.checkpoint_policies.save_only_these_names("attn_out")}

# Up to this many rows (B x T) the vocabulary projection puts the weights first (Decoder.logits). Measured on XLA:CPU,
# 2-core AVX2, forward: [V, D] = [262,144, 640] at 4 rows 28 vs 63 ms, at 64 rows 242 vs 310 ms; at 128 rows the
# two orders tie and at 512 the usual one wins (1.68 vs 1.90 s).
_FEW_ROWS = 64

Cache = dict[str, jax.Array]     # k_LBSKH, v_LBSKH, pos_LBS (-1 marks an empty slot); one S for every layer


def _param(rngs: nnx.Rngs, shape, axes, init="normal", dtype="float32", stack: int | None = None) -> nnx.Param:
    """A parameter with logical axis names; `stack` = L prepends the layer axis [L, ...] named "layers"."""
    if stack is not None:
        shape, axes = (stack, *shape), ("layers", *axes)
    if init == "normal":
        value = 0.02 * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    else:
        value = jnp.zeros(shape, jnp.float32)
    return nnx.Param(value.astype(dtype), out_sharding=axes)


class RMSNorm(nnx.Module):
    """RMSNorm in float32; Gemma stores w centred on 0 and scales by (1 + w)."""

    def __init__(self, dim: int, cfg: ModelConfig, rngs: nnx.Rngs, stack: int | None = None):
        self.eps, self.plus_one = cfg.norm_eps, cfg.norm_plus_one
        self.scale = _param(rngs, (dim,), ("norm",), "zeros" if cfg.norm_plus_one else "ones", cfg.param_dtype, stack)

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        w = self.scale[...].astype(jnp.float32)
        w = (1.0 + w if self.plus_one else w).reshape((1,) * (x.ndim - 1) + w.shape)
        return (y * w).astype(x.dtype)


def rope_inv_freq(cfg: ModelConfig, local: bool) -> jax.Array:
    """Inverse frequencies [H/2] in float32, with Llama 3.1 or linear scaling on the global layers."""
    theta = cfg.rope_local_theta if (local and cfg.rope_local_theta) else cfg.rope_theta
    inv = 1.0 / (theta ** (jnp.arange(0, cfg.head_dim, 2, dtype=jnp.float32) / cfg.head_dim))
    sc = None if local else cfg.rope_scaling
    if sc is None:
        return inv
    if sc.kind == "linear":
        return inv / sc.factor
    # Llama 3.1: keep high frequencies, divide low ones by factor, interpolate smoothly in between.
    low_wavelen = sc.original_max_position / sc.low_freq_factor
    high_wavelen = sc.original_max_position / sc.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = jnp.where(wavelen > low_wavelen, inv / sc.factor, inv)
    smooth = (sc.original_max_position / wavelen - sc.low_freq_factor) / (sc.high_freq_factor - sc.low_freq_factor)
    smoothed = (1 - smooth) * scaled / sc.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return jnp.where(medium, smoothed, scaled)


def apply_rope(x_BTNH, positions_BT, inv_freq):
    """Rotate-half RoPE (the Hugging Face weight layout), computed in float32."""
    angles_BTh = positions_BT[..., None].astype(jnp.float32) * inv_freq[None, None, :]
    cos = jnp.concatenate([jnp.cos(angles_BTh)] * 2, axis=-1)[:, :, None, :]
    sin = jnp.concatenate([jnp.sin(angles_BTh)] * 2, axis=-1)[:, :, None, :]
    x = x_BTNH.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x * cos + rotated * sin).astype(x_BTNH.dtype)


def layer_inputs(cfg: ModelConfig) -> tuple[jax.Array, jax.Array]:
    """What differs between layers, as scan inputs: RoPE inverse frequencies inv_freq_LH [L, H/2] (local layers use
    rope_local_theta and no scaling) and the sliding-window flag is_local_L [L]."""
    local = [cfg.layer_type(i) == "local" for i in range(cfg.num_layers)]
    return jnp.stack([rope_inv_freq(cfg, is_local) for is_local in local]), jnp.asarray(local)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, stack: int | None = None):
        D, N, K, H, pd = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.param_dtype
        self.cfg = cfg
        self.q = _param(rngs, (D, N, H), ("embed", "heads", "head_dim"), dtype=pd, stack=stack)
        self.k = _param(rngs, (D, K, H), ("embed", "kv_heads", "head_dim"), dtype=pd, stack=stack)
        self.v = _param(rngs, (D, K, H), ("embed", "kv_heads", "head_dim"), dtype=pd, stack=stack)
        self.o = _param(rngs, (N, H, D), ("heads", "head_dim", "embed"), dtype=pd, stack=stack)
        if stack is not None:      # adapters (models/lora.py): q_lora, k_lora, v_lora, o_lora, when targeted
            for name, n, heads in (("q", N, "heads"), ("k", K, "kv_heads"), ("v", K, "kv_heads")):
                setattr(self, f"{name}_lora", adapters_of(cfg, name, (D,), ("embed",), (n, H), (heads, "head_dim"),
                                                          rngs, stack))
            self.o_lora = adapters_of(cfg, "o", (N, H), ("heads", "head_dim"), (D,), ("embed",), rngs, stack)
        if cfg.qkv_bias:
            self.q_bias = _param(rngs, (N, H), ("heads", "head_dim"), "zeros", pd, stack)
            self.k_bias = _param(rngs, (K, H), ("kv_heads", "head_dim"), "zeros", pd, stack)
            self.v_bias = _param(rngs, (K, H), ("kv_heads", "head_dim"), "zeros", pd, stack)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(H, cfg, rngs, stack)
            self.k_norm = RMSNorm(H, cfg, rngs, stack)

    def __call__(self, x_BTD, positions_BT, mask_BT, cache: Cache | None, layer, inv_freq, is_local,
                 prefill: bool = False, key=None):
        """One layer's attention (parameters already sliced to that layer). `layer` indexes the stacked cache;
        `inv_freq` [H/2] and `is_local` (bool) are that layer's RoPE frequencies and sliding-window flag, Python
        values in the unrolled loop, scan slices otherwise. `key`: adapter dropout (training only), or None."""
        cfg, dt = self.cfg, x_BTD.dtype
        q_BTNH, k_BTKH, v_BTKH = (project(self, name, x_BTD, key=key) for name in ("q", "k", "v"))
        if cfg.qkv_bias:
            q_BTNH += self.q_bias[...].astype(dt)[None, None]
            k_BTKH += self.k_bias[...].astype(dt)[None, None]
            v_BTKH += self.v_bias[...].astype(dt)[None, None]
        if cfg.qk_norm:
            q_BTNH, k_BTKH = self.q_norm(q_BTNH), self.k_norm(k_BTKH)
        q_BTNH, k_BTKH = apply_rope(q_BTNH, positions_BT, inv_freq), apply_rope(k_BTKH, positions_BT, inv_freq)

        # Keys are [cache slots; new tokens]: the new tokens must see each other even when a prefill is longer
        # than a sliding-window layer's ring buffer, so they are attended before being written.
        # A prefill starts from an empty cache: attending to its slots would only double the key length.
        new_cache = None
        if cache is None or prefill:
            keys_BSKH, vals_BSKH, k_pos_BS, k_ok_BS = k_BTKH, v_BTKH, positions_BT, mask_BT
        elif q_BTNH.shape[1] == 1:
            # One decoded token: write it first and attend over the cache alone. Concatenating [cache; new] would
            # copy every layer's whole cache on every step (half the decode time at 32 rows on CPU). The write
            # lands in a free column (by_column caches) or at slot pos % S, which held position pos - S: no longer
            # visible to this query when S >= the window.
            new_cache = _write_cache(cache, layer, k_BTKH, v_BTKH, positions_BT, mask_BT)
            if decode_reads_filled(cfg, new_cache):
                B, _, N, H = q_BTNH.shape
                out_BTKGH = decode_attend(
                    q_BTNH.reshape(B, 1, cfg.num_kv_heads, N // cfg.num_kv_heads, H), new_cache, layer,
                    positions_BT, mask_BT, scale=_scale(cfg), softcap=cfg.attn_logit_softcap, window=_window(cfg),
                    is_local=is_local, block=min(cfg.attention_block, DECODE_BLOCK))
                return project(self, "o", out_BTKGH.reshape(B, 1, N, H), contract=2, key=key), new_cache
            keys_BSKH, vals_BSKH = new_cache["k"][layer].astype(dt), new_cache["v"][layer].astype(dt)
            k_pos_BS = new_cache["pos"][layer]
            k_ok_BS = k_pos_BS >= 0
        else:
            keys_BSKH = jnp.concatenate([cache["k"][layer].astype(dt), k_BTKH], axis=1)
            vals_BSKH = jnp.concatenate([cache["v"][layer].astype(dt), v_BTKH], axis=1)
            k_pos_BS = jnp.concatenate([cache["pos"][layer], positions_BT], axis=1)
            k_ok_BS = jnp.concatenate([cache["pos"][layer] >= 0, mask_BT], axis=1)

        B, T, N, H = q_BTNH.shape
        K = cfg.num_kv_heads
        out_BTKGH = attend(
            q_BTNH.reshape(B, T, K, N // K, H), keys_BSKH, vals_BSKH, positions_BT, k_pos_BS, mask_BT,
            k_ok_BS.astype(jnp.int32) if cache is not None and not prefill else mask_BT,
            scale=_scale(cfg), softcap=cfg.attn_logit_softcap, window=_window(cfg), is_local=is_local,
            impl=cfg.attention, self_causal=cache is None or prefill, block=cfg.attention_block)
        out_BTNH = out_BTKGH.reshape(B, T, N, H)
        out_BTD = project(self, "o", out_BTNH, contract=2, key=key)
        if new_cache is None and cache is not None:
            new_cache = _write_cache(cache, layer, k_BTKH, v_BTKH, positions_BT, mask_BT)
        return out_BTD, new_cache


def _scale(cfg: ModelConfig) -> float:
    return (cfg.query_pre_attn_scalar or cfg.head_dim) ** -0.5


def _window(cfg: ModelConfig) -> int | None:
    """The sliding window of the local layers, None for a model without them."""
    return cfg.sliding_window if "local" in cfg.layer_types else None


def decode_reads_filled(cfg: ModelConfig, cache: Cache) -> bool:
    """A decoded token attends over the filled columns only (models/decode_attention.py) when the cache is the
    sampler's by-column one and longer than one block (min(attention_block, DECODE_BLOCK) columns), and the
    attention setting is "auto", "blockwise" or "splash" (a prefill and training kernel; decoding is not its case);
    "plain" (the reference) and "dot_product" (jax.nn's, opt-in) read every slot.
    In the sampler's loop the plain form's step time grows with the allocated length, this one's with the filled
    part (bench/README.md: 32 steps at 4,096 columns 34.3 s -> 5.8 s)."""
    return ("at" in cache and cfg.attention in ("auto", "blockwise", "splash")
            and cache["k"].shape[2] > min(cfg.attention_block, DECODE_BLOCK))


def _write_cache(cache: Cache, layer, k_BTKH, v_BTKH, positions_BT, mask_BT) -> Cache:
    """Store layer `layer`'s new keys in the stacked buffer, in place (it is the scan carry).

    A cache with an "at" entry (init_cache(..., by_column=True), the sampler's) writes the T new columns at slots
    [at, at + T) of every row: one dynamic-update-slice, pads stored with position -1. Otherwise each key goes to
    slot = position % S (a ring buffer for any S); pads, and tokens that a longer-than-S prefill would overwrite in
    the same call, are sent to slot S and dropped, so no two writes hit one slot (scatter order is undefined)."""
    if "at" in cache:
        pos_BT = jnp.where(mask_BT > 0, positions_BT, -1)
        zero = jnp.zeros((), jnp.int32)
        start = lambda ndim: (jnp.asarray(layer, jnp.int32), zero, cache["at"]) + (zero,) * (ndim - 3)
        put = lambda buf, new: jax.lax.dynamic_update_slice(buf, new.astype(buf.dtype)[None], start(buf.ndim))
        return {"k": put(cache["k"], k_BTKH), "v": put(cache["v"], v_BTKH), "pos": put(cache["pos"], pos_BT),
                "at": cache["at"]}
    S = cache["pos"].shape[2]
    valid = mask_BT.astype(jnp.int32)
    later_BT = jnp.cumsum(valid[:, ::-1], axis=1)[:, ::-1] - valid     # valid tokens after t in the row
    slot_BT = jnp.where((valid > 0) & (later_BT < S), positions_BT % S, S)
    rows_BT = jnp.broadcast_to(jnp.arange(slot_BT.shape[0])[:, None], slot_BT.shape)
    put = lambda buf, new: buf.at[layer, rows_BT, slot_BT].set(new.astype(buf.dtype), mode="drop")
    return {"k": put(cache["k"], k_BTKH), "v": put(cache["v"], v_BTKH), "pos": put(cache["pos"], positions_BT)}


class MLP(nnx.Module):
    """Gated MLP: SwiGLU (silu) or GeGLU (tanh-approximated gelu)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, stack: int | None = None):
        D, F, pd = cfg.embed_dim, cfg.mlp_dim, cfg.param_dtype
        self.act = jax.nn.silu if cfg.activation == "silu" else (lambda x: jax.nn.gelu(x, approximate=True))
        self.gate = _param(rngs, (D, F), ("embed", "mlp"), dtype=pd, stack=stack)
        self.up = _param(rngs, (D, F), ("embed", "mlp"), dtype=pd, stack=stack)
        self.down = _param(rngs, (F, D), ("mlp", "embed"), dtype=pd, stack=stack)
        if stack is not None:
            for name, (i, ia), (o, oa) in (("gate", (D, "embed"), (F, "mlp")), ("up", (D, "embed"), (F, "mlp")),
                                           ("down", (F, "mlp"), (D, "embed"))):
                setattr(self, f"{name}_lora", adapters_of(cfg, name, (i,), (ia,), (o,), (oa,), rngs, stack))

    def __call__(self, x_BTD, key=None):
        gate_BTF = project(self, "gate", x_BTD, key=key)
        up_BTF = project(self, "up", x_BTD, key=key)
        return project(self, "down", self.act(gate_BTF) * up_BTF, key=key)


class Block(nnx.Module):
    """All L decoder layers as one module whose parameters are stacked [L, ...]; called on one layer's slice."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, L = cfg.embed_dim, cfg.num_layers
        self.sandwich = cfg.sandwich_norms
        self.attn_norm, self.attn = RMSNorm(D, cfg, rngs, L), Attention(cfg, rngs, L)
        self.mlp_norm, self.mlp = RMSNorm(D, cfg, rngs, L), MLP(cfg, rngs, L)
        if cfg.sandwich_norms:
            self.post_attn_norm = RMSNorm(D, cfg, rngs, L)
            self.post_mlp_norm = RMSNorm(D, cfg, rngs, L)

    def __call__(self, x_BTD, positions_BT, mask_BT, cache, layer, inv_freq, is_local, prefill: bool = False,
                 key=None):
        a_BTD, cache = self.attn(self.attn_norm(x_BTD), positions_BT, mask_BT, cache, layer, inv_freq, is_local,
                                 prefill, key)
        a_BTD = checkpoint_name(a_BTD, "attn_out")          # what remat="save_attention" keeps
        x_BTD = x_BTD + (self.post_attn_norm(a_BTD) if self.sandwich else a_BTD)
        # The MLP's projections fold in their own indices too: a distinct stream keeps them off attention's.
        m_BTD = self.mlp(self.mlp_norm(x_BTD), None if key is None else jax.random.fold_in(key, 1 << 16))
        return x_BTD + (self.post_mlp_norm(m_BTD) if self.sandwich else m_BTD), cache


class Decoder(nnx.Module):
    """Causal LM. `model(tokens_BT) -> logits_BTV` is the plain forward; `hidden` + `logits` let the loss code
    project onto the vocabulary in chunks; `decode` runs with a KV cache for the sampler."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        with nnx.use_eager_sharding(False):   # logical names are resolved later against a mesh (sharding.py)
            self.embed = _param(rngs, (cfg.vocab_size, cfg.embed_dim), ("vocab", "embed"), dtype=cfg.param_dtype)
            self.layers = Block(cfg, rngs)          # stacked: parameters [L, ...]
            self.final_norm = RMSNorm(cfg.embed_dim, cfg, rngs)
            if not cfg.tie_embeddings:
                self.lm_head = _param(rngs, (cfg.embed_dim, cfg.vocab_size), ("embed", "vocab"), dtype=cfg.param_dtype)

    def __call__(self, tokens_BT, mask_BT=None, positions_BT=None):
        return self.logits(self.hidden(tokens_BT, mask_BT, positions_BT))

    def hidden(self, tokens_BT, mask_BT=None, positions_BT=None):
        """Final-normed hidden states h_BTD. Default positions count real tokens, so left padding is harmless."""
        mask_BT, positions_BT = default_mask_positions(tokens_BT, mask_BT, positions_BT)
        return self._run(tokens_BT, positions_BT, mask_BT, None)[0]

    def decode(self, tokens_BT, positions_BT, mask_BT, cache: Cache, prefill: bool = False, last_only: bool = False):
        """Forward T new tokens against a KV cache; returns (logits, new cache). prefill=True promises the cache
        is empty (a fresh init_cache), so attention skips its slots. last_only=True projects only the last column
        onto the vocabulary: a left-padded prefill needs no more, and [B, T, 262k] float32 logits would not fit."""
        h_BTD, cache = self._run(tokens_BT, positions_BT, mask_BT, cache, prefill)
        return self.logits(h_BTD[:, -1:] if last_only else h_BTD), cache

    def _run(self, tokens_BT, positions_BT, mask_BT, cache, prefill: bool = False):
        cfg, dt = self.cfg, jnp.dtype(self.cfg.compute_dtype)
        x_BTD = jnp.take(self.embed[...], tokens_BT, axis=0).astype(dt)
        if cfg.embed_scale:   # HF rounds sqrt(D) to the parameter dtype before multiplying
            x_BTD = x_BTD * jnp.asarray(math.sqrt(cfg.embed_dim), cfg.param_dtype).astype(dt)
        graphdef, stack = nnx.split(self.layers)
        # Adapter dropout: a key per layer while training (lora.set_dropout_key sets it for one forward), else None.
        key = getattr(self, "dropout_key", None)
        keys_L = None if key is None else jax.random.split(key, cfg.num_layers)

        def block(x_BTD, cache, params, layer, inv_freq, is_local, key):
            # Constraints only at block boundaries: inside a block XLA's propagation from the weights suffices.
            x_BTD = constrain(x_BTD, "batch", "seq", None)   # D replicated: fsdp shards weights only
            return nnx.merge(graphdef, params)(x_BTD, positions_BT, mask_BT, cache, layer, inv_freq, is_local,
                                               prefill=prefill, key=key)    # prefill stays a static Python bool
        if cfg.remat != "none":   # inside a scan, the scan already keeps XLA from merging the recomputation away
            block = jax.checkpoint(block, prevent_cse=not cfg.scan_layers, policy=_REMAT[cfg.remat])

        if cfg.scan_layers:
            # The KV cache rides in the carry, so each layer's scatter updates the stacked buffer in place.
            def body(carry, xs):
                return block(*carry, *xs), None
            inv_freq_LH, is_local_L = layer_inputs(cfg)
            xs = (stack, jnp.arange(cfg.num_layers), inv_freq_LH, is_local_L, keys_L)
            (x_BTD, cache), _ = jax.lax.scan(body, (x_BTD, cache), xs)
        else:
            for i in range(cfg.num_layers):
                local = cfg.layer_type(i) == "local"
                params = jax.tree.map(lambda p: p[i], stack)
                x_BTD, cache = block(x_BTD, cache, params, i, rope_inv_freq(cfg, local), local,
                                     None if keys_L is None else keys_L[i])
        if cache is not None and "at" in cache:
            cache = {**cache, "at": cache["at"] + tokens_BT.shape[1]}
        return self.final_norm(x_BTD), cache

    def logits(self, h_BTD, vocab_start=0, vocab_size: int | None = None):
        """float32 logits for the vocabulary slice [vocab_start, vocab_start + vocab_size); start may be traced."""
        cfg, dt = self.cfg, h_BTD.dtype
        size = vocab_size or cfg.vocab_size
        if cfg.tie_embeddings:
            w_VD = jax.lax.dynamic_slice_in_dim(self.embed[...], vocab_start, size, axis=0)
        else:
            w_VD = jax.lax.dynamic_slice_in_dim(self.lm_head[...], vocab_start, size, axis=1).T
        if h_BTD.shape[0] * h_BTD.shape[1] <= _FEW_ROWS:
            # A decode step's few rows: with the weights as the dot's left operand XLA:CPU streams [V, D] once as a
            # tall GEMM (Gemma-3-270M, 4 rows: 28 ms instead of 63 ms a step); with many rows the usual order wins.
            logits_VBT = jnp.einsum("VD,BTD->VBT", w_VD.astype(dt), h_BTD, preferred_element_type=jnp.float32)
            logits_BTV = logits_VBT.transpose(1, 2, 0)
        else:
            logits_BTV = jnp.einsum("BTD,VD->BTV", h_BTD, w_VD.astype(dt), preferred_element_type=jnp.float32)
        if cfg.final_logit_softcap:
            logits_BTV = jnp.tanh(logits_BTV / cfg.final_logit_softcap) * cfg.final_logit_softcap
        return logits_BTV


def default_mask_positions(tokens_BT, mask_BT=None, positions_BT=None):
    """All-ones mask by default; positions = number of earlier real tokens of the same segment (0 for leading pads,
    the last position for trailing ones; pads are never visible), so left padding is harmless and each document of a
    packed row starts at position 0."""
    if mask_BT is None:
        mask_BT = jnp.ones(tokens_BT.shape, jnp.int32)
    if positions_BT is None:
        real_BT = jnp.cumsum((mask_BT > 0).astype(jnp.int32), axis=1)         # real tokens up to and including t
        starts_BT = (mask_BT > 0) & (mask_BT != jnp.pad(mask_BT, ((0, 0), (1, 0)))[:, :-1])
        before_BT = jax.lax.cummax(jnp.where(starts_BT, real_BT - 1, 0), axis=1)   # real tokens before the segment
        positions_BT = jnp.maximum(real_BT - before_BT - 1, 0)
    return mask_BT, positions_BT


def init_cache(cfg: ModelConfig, batch: int, max_len: int, by_column: bool = False) -> Cache:
    """Empty KV cache, stacked over layers: k, v [L, B, S, K, H] and pos [L, B, S] with S = max_len on every layer.

    The trade-off of one S for all layers (so the cache is one scan input): sliding-window layers keep max_len slots
    where their window would do. For Gemma 3 (5 local : 1 global, window 512-1024) at long contexts that is up to
    about 6x the cache memory of per-layer sizes; at max_len <= window it costs nothing. Attention masks by position,
    and writes go to slot = position % S, so the ring-buffer logic is correct for any S.

    by_column=True (the sampler): call t's tokens go to the next free columns, the same slots for every row, tracked
    by the scalar cache["at"]; one dynamic-update-slice per layer instead of a scatter. The caller promises that
    max_len covers every token it will write (prompt columns + new tokens): nothing wraps."""
    dt = jnp.dtype(cfg.compute_dtype)
    shape = (cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
    kv = lambda: constrain(jnp.zeros(shape, dt), "layers", "batch", "seq", "kv_heads", "head_dim")
    pos = constrain(jnp.full(shape[:3], -1, jnp.int32), "layers", "batch", "seq")
    cache = {"k": kv(), "v": kv(), "pos": pos}
    return {**cache, "at": jnp.zeros((), jnp.int32)} if by_column else cache
