"""Jitted KV-cache sampler: one batched prefill of left-padded prompts, then decoding in one lax.while_loop.

Shapes are bucketed (prompts rounded up by bucket_rows, prompt length up to a power of two) so a whole evaluation
compiles once per (batch bucket, length bucket) rather than once per prompt. Rows: R = prompts x n samples. The
filler rows of a bucket are done from the first step: they never hold the loop open.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from caujax.models.config import stop_ids
from caujax.models.decoder import init_cache
from caujax.models.layout import is_matrix
from caujax.sampling.methods import SamplingParams, next_tokens
from caujax.sharding import SAMPLE_RULES, batch_sharding, batch_ways, fetch_global, put_global, tree_shardings, use_rules


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class SamplingState:
    step: jax.Array            # number of tokens sampled so far (scalar)
    tokens_RM: jax.Array       # sampled ids, pad after a row is done; M = max_new_tokens
    logp_RM: jax.Array         # log-probs of the sampled ids under the sampled distribution; 0 after done
    floor_RM: jax.Array        # its support: the smallest scaled logit kept by top-k/top-p (-inf: no filter)
    done_R: jax.Array          # row has produced EOS or a stop sequence
    lengths_R: jax.Array       # tokens sampled while the row was live (EOS / stop tokens included)
    logits_RV: jax.Array       # logits for the next token
    positions_R: jax.Array     # position of the next token
    cache: dict                # KV cache stacked over layers: k, v [L, R, S, K, H], pos [L, R, S], and the next
    #                            column "at" (decoder.init_cache, by_column: prompt columns, then one per step)
    rng: jax.Array


class Samples(NamedTuple):
    tokens: np.ndarray     # [R, M] sampled ids, 0 after a row ends
    logp: np.ndarray       # [R, M] their log-probs under the sampled distribution (softmax(logits / T) over the
    #                        top-k/top-p support, methods.next_tokens), 0 after a row ends
    lengths: np.ndarray    # [R] tokens each row produced (EOS or stop sequence included)
    done: np.ndarray       # [R] ended by EOS or a stop sequence rather than by max_new_tokens
    floor: np.ndarray      # [R, M] the support of each draw: scaled logits >= floor (-inf without top-k/top-p)
    steps: int             # decode steps the loop ran: the longest live row's length (bucket filler rows excluded)


@dataclasses.dataclass(frozen=True)
class SampleOutput:
    tokens: list[list[list[int]]]       # [prompt][sample] completion ids, EOS included when produced
    logprobs: list[list[np.ndarray]]    # same layout, one float per token
    texts: list[list[str]]
    done: list[list[bool]]              # ended by an end id or a stop sequence; False = cut at max_new_tokens


def bucket(x: int, multiple: int = 8) -> int:
    """Next power of two >= x, rounded up to a multiple of `multiple` (mesh batch shards, or 8 tokens): the
    compile-cache key for batch and prompt length."""
    pow2 = 1 << (max(x, 1) - 1).bit_length()
    return -(-pow2 // multiple) * multiple


def bucket_rows(prompts: int, shards: int = 1) -> int:
    """Prompts per sampler call rounded up to a power of two up to 8, then to a multiple of 8, and to a multiple of
    the mesh's batch shards: the compile-cache key for the batch. Not a power of two beyond 8: every filler row
    costs its share of every decode step (100 prompts bucketed to 128 rows decoded 28% filler, 4 GRPO prompts
    bucketed to 8 decoded half); eval.generate_set balances a set's batches so that they share one shape."""
    small = 1 << (max(prompts, 1) - 1).bit_length()
    rows = small if small <= 8 else -(-prompts // 8) * 8
    return -(-rows // shards) * shards


@functools.partial(jax.jit, static_argnames=("graphdef", "params", "eos_ids", "stop_ids", "cache_len"))
def _sample(graphdef, state, prompt_BP, mask_BP, live_prompts, rng, *, params: SamplingParams,
            eos_ids: tuple[int, ...], stop_ids: tuple[tuple[int, ...], ...], cache_len: int):
    model = nnx.merge(graphdef, state)
    compute = jnp.dtype(model.cfg.compute_dtype)
    if compute != jnp.float32:      # a no-op when sample_ids has cast them already (sampling_weights)
        model = nnx.merge(graphdef, _cast_matrices(state, compute))
    B, P = prompt_BP.shape
    n, M = params.n, params.max_new_tokens
    positions_BP = jnp.maximum(jnp.cumsum(mask_BP, axis=1) - 1, 0)
    logits_B1V, cache = model.decode(prompt_BP, positions_BP, mask_BP,
                                     init_cache(model.cfg, B, cache_len, by_column=True), prefill=True, last_only=True)
    # The n samples of a prompt share its prefill: repeat the cache rows instead of recomputing them.
    rep = lambda x: jnp.repeat(x, n, axis=0)
    state0 = SamplingState(
        step=jnp.zeros((), jnp.int32), tokens_RM=jnp.zeros((B * n, M), jnp.int32),
        logp_RM=jnp.zeros((B * n, M), jnp.float32), floor_RM=jnp.full((B * n, M), -jnp.inf, jnp.float32),
        done_R=jnp.arange(B * n) >= live_prompts * n,      # bucket filler rows: done before they start
        lengths_R=jnp.zeros((B * n,), jnp.int32),
        logits_RV=rep(logits_B1V[:, 0]), positions_R=rep(positions_BP[:, -1] + 1),
        cache={k: x if k == "at" else jnp.repeat(x, n, axis=1) for k, x in cache.items()},   # rows: axis 1
        rng=rng)
    eos = jnp.asarray(eos_ids or (-1,), jnp.int32)

    def cond(s: SamplingState):
        return (s.step < M) & ~jnp.all(s.done_R)

    def body(s: SamplingState):
        rng, key = jax.random.split(s.rng)
        tok_R, logp_R, floor_R = next_tokens(s.logits_RV, key, params)
        live_R = ~s.done_R
        tok_R = jnp.where(live_R, tok_R, 0)
        tokens = s.tokens_RM.at[:, s.step].set(tok_R)
        logp = s.logp_RM.at[:, s.step].set(jnp.where(live_R, logp_R, 0.0))
        floor = s.floor_RM.at[:, s.step].set(jnp.where(live_R, floor_R, -jnp.inf))
        done = s.done_R | (live_R & (jnp.any(tok_R[:, None] == eos[None, :], axis=-1) | _ends_with(tokens, s.step)))
        logits, cache = model.decode(tok_R[:, None], s.positions_R[:, None], live_R[:, None].astype(jnp.int32),
                                     s.cache)
        return SamplingState(s.step + 1, tokens, logp, floor, done, s.lengths_R + live_R, logits[:, 0],
                             s.positions_R + 1, cache, rng)

    def _ends_with(tokens_RM, step):
        """Row's sampled tokens end with one of the stop sequences (the text is cut exactly afterwards)."""
        hit_R = jnp.zeros(tokens_RM.shape[0], bool)
        for seq in stop_ids:
            tail = jax.lax.dynamic_slice_in_dim(tokens_RM, jnp.maximum(step + 1 - len(seq), 0), len(seq), axis=1)
            hit_R |= (step + 1 >= len(seq)) & jnp.all(tail == jnp.asarray(seq, jnp.int32)[None, :], axis=1)
        return hit_R

    final = jax.lax.while_loop(cond, body, state0)
    return final.tokens_RM, final.logp_RM, final.lengths_R, final.done_R, final.floor_RM, final.step


def _cast_matrices(state, compute):
    """Weight matrices in the compute dtype; norm scales and biases keep theirs. Decoding reads every matrix once
    per token: cast once, not inside every step."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x.astype(compute) if is_matrix(path) and jnp.issubdtype(x.dtype, jnp.floating) else x, state)


_cast = jax.jit(_cast_matrices, static_argnames="compute")


def sampling_weights(state, compute_dtype, mesh=None):
    """The weights the sampler reads: matrices cast to the compute dtype, then, with a mesh, placed by SAMPLE_RULES
    (whole per data shard, heads over tensor). Casting before re-placing means the sampling copy of a bfloat16 run
    is half the float32 bytes, and no float32 copy in the sampling layout ever exists (a 14B policy on fsdp=32 x
    tensor=2: 13.8 GiB per device instead of 27.5 + 13.8; python -m caujax.plan)."""
    compute = jnp.dtype(compute_dtype)
    if compute != jnp.float32:
        state = _cast(state, compute=compute)
    return state if mesh is None else jax.device_put(state, tree_shardings(state, mesh, SAMPLE_RULES))


def compilations() -> int:
    """Programs compiled so far for the sampler (one per batch bucket x length bucket x sampling settings)."""
    return _sample._cache_size()


def cache_bytes(cfg, rows: int, cache_len: int) -> int:
    """Bytes of the KV cache for `rows` sequences: every layer holds cache_len slots, sliding-window layers included
    (the stacked cache has one S for all layers; decoder.init_cache states the trade-off)."""
    itemsize = jnp.dtype(cfg.compute_dtype).itemsize
    return cfg.num_layers * rows * cache_len * (2 * cfg.num_kv_heads * cfg.head_dim * itemsize + 4)


def _free_bytes(device) -> int | None:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    try:                                    # CPU: physical memory
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_cache_fits(cfg, rows: int, cache_len: int, shards: int = 1, device=None) -> int:
    """Plan the cache before compiling: refuse with the numbers when one device's share cannot fit. The device
    asked is one of this process's own (another process's devices report no memory here)."""
    need = cache_bytes(cfg, rows, cache_len) // shards
    free = _free_bytes(device or jax.local_devices()[0])
    if free is not None and need > 0.9 * free:
        raise MemoryError(
            f"KV cache needs {need / 2**30:.2f} GiB per device ({rows} rows x {cache_len} slots, "
            f"{cfg.num_layers} layers, {cfg.num_kv_heads} kv heads x {cfg.head_dim}, {cfg.compute_dtype}) but only "
            f"{free / 2**30:.2f} GiB is free: lower the batch size, n or max_new_tokens, or shard over more devices")
    return need


def sample_ids(model, prompts: list[list[int]], params: SamplingParams, *, eos_ids=(), pad_id: int = 0, mesh=None,
               stop_ids: tuple[tuple[int, ...], ...] = ()):
    """Sample from token-id prompts: numpy Samples with rows ordered prompt-major (the n samples of prompt i are
    rows i*n .. i*n+n-1) and the padding rows of the batch bucket removed. With `mesh`, rows and cache are split
    over ("data", "fsdp") and heads over "tensor" (sharding.SAMPLE_RULES)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    shards = batch_ways(mesh)
    B, P = bucket_rows(len(prompts), shards), bucket(max(len(p) for p in prompts))
    check_cache_fits(model.cfg, B * params.n, P + params.max_new_tokens, shards)
    tokens = np.full((B, P), pad_id, np.int32)
    mask = np.zeros((B, P), np.int32)
    for i, p in enumerate(prompts):      # left padding: every row's last prompt token sits in column P-1
        tokens[i, P - len(p):], mask[i, P - len(p):] = p, 1
    mask[len(prompts):, -1] = 1          # bucket filler rows: one dummy token each, dropped below
    graphdef, state = nnx.split(model)
    live = jnp.asarray(len(prompts), jnp.int32)
    args = (jnp.asarray(tokens), jnp.asarray(mask))
    # The seed and stop strings are not part of the compiled program: keep them out of the static key.
    static = dict(params=dataclasses.replace(params, seed=0, stop=()), eos_ids=tuple(int(e) for e in eos_ids),
                  stop_ids=tuple(tuple(int(t) for t in seq) for seq in stop_ids if seq),
                  cache_len=P + params.max_new_tokens)
    state = sampling_weights(state, model.cfg.compute_dtype, mesh)
    if mesh is None:
        out = _sample(graphdef, state, *args, live, jax.random.key(params.seed), **static)
    else:
        args = tuple(put_global(a, batch_sharding(mesh)) for a in (tokens, mask))
        with jax.set_mesh(mesh), use_rules(SAMPLE_RULES):
            out = _sample(graphdef, state, *args, live, jax.random.key(params.seed), **static)
    keep = len(prompts) * params.n
    return Samples(*(fetch_global(x)[:keep] for x in out[:-1]), int(fetch_global(out[-1])))


def end_ids(model_cfg, tokenizer) -> tuple[int, ...]:
    """The token ids that end a completion, sorted: the union (models.config.stop_ids) of the model config's
    eos_token_ids (the loaders' union of every stop id the checkpoint declares: config.json, generation_config.json,
    the tokenizer, or a GGUF file's eos/eot/eom) and the eos of `tokenizer`, which may be another than the
    checkpoint's (--model.tokenizer); None for no tokenizer. As transformers' generate with a list eos_token_id."""
    return stop_ids(model_cfg.eos_token_ids, None if tokenizer is None else tokenizer.eos_token_id)


def sample(model, tokenizer, prompts: list[str], params: SamplingParams, add_special_tokens: bool | None = None,
           mesh=None):
    """Sample `params.n` completions for each prompt text; ids, per-token log-probs and decoded texts."""
    ids = [prompt_ids(tokenizer, text, add_special_tokens) for text in prompts]
    # Stop strings end decoding on device when the sampled ids spell their usual tokenization; texts are cut at
    # the string whatever the tokenization, so the result is exact either way.
    stop_ids = tuple(tuple(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in params.stop)
    toks, logp, lengths, done, *_ = sample_ids(model, ids, params, eos_ids=end_ids(model.cfg, tokenizer),
                                        pad_id=tokenizer.pad_token_id or 0, mesh=mesh, stop_ids=stop_ids)
    out_tokens, out_logp, out_texts, out_done = [], [], [], []
    for i in range(len(prompts)):
        rows = range(i * params.n, (i + 1) * params.n)
        seqs = [toks[r, : lengths[r]].tolist() for r in rows]
        out_tokens.append(seqs)
        out_logp.append([logp[r, : len(s)] for r, s in zip(rows, seqs)])
        out_texts.append([_cut(tokenizer.decode(s, skip_special_tokens=True), params.stop) for s in seqs])
        out_done.append([bool(done[r]) for r in rows])
    return SampleOutput(out_tokens, out_logp, out_texts, out_done)


def prompt_ids(tokenizer, text: str, add_special_tokens: bool | None = None) -> list[int]:
    """The token ids `sample` feeds for one prompt text: special tokens (BOS) added unless the text already starts
    with the BOS token, as a chat template's output does; `add_special_tokens` overrides."""
    bos = getattr(tokenizer, "bos_token", None)
    add = add_special_tokens if add_special_tokens is not None else not (bos and text.startswith(bos))
    return tokenizer(text, add_special_tokens=add)["input_ids"]


def generate(model, tokenizer, prompts: list[str], params: SamplingParams) -> list[list[str]]:
    """The completions' texts: [prompt][sample]."""
    return sample(model, tokenizer, prompts, params).texts


def _cut(text: str, stop: tuple[str, ...]) -> str:
    for s in stop:
        if s in text:
            text = text[: text.index(s)]
    return text
