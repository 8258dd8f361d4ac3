"""Sampling parameters and next-token selection (greedy, temperature, top-k, top-p), all inside jit."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """What to sample. temperature == 0 means greedy. The CauGym protocol is n=5, temperature=0.6, top_p=0.95,
    max_new_tokens=8192 (the CauGym paper's evaluation settings)."""

    n: int = 1                      # samples per prompt; they share the prompt's prefill
    temperature: float = 1.0
    top_p: float = 1.0              # nucleus: smallest set of tokens whose probability reaches top_p
    top_k: int = 0                  # 0 = no top-k
    max_new_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()      # texts are cut at the first stop string (EOS ends decoding on device)

    def __post_init__(self):
        if self.n < 1 or self.max_new_tokens < 1:
            raise ValueError(f"n={self.n} and max_new_tokens={self.max_new_tokens} must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0, top_p={self.top_p} in (0, 1], "
                             f"top_k={self.top_k} >= 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# The top-p prefixes tried before bisecting over the whole vocabulary (see filter_logits): on CPU, [8, 262144] float32,
# lax.top_k takes ~6 ms for k=64 and ~13 ms for k=1024 where the full sort takes ~780 ms.
TOP_P_PREFILTERS = (64, 1024)


def filter_logits(logits_BV, *, top_k: int, top_p: float, prefilters: tuple[int, ...] = TOP_P_PREFILTERS):
    """Mask to finfo.min every token outside the top-k and outside the top-p nucleus (ties at the boundary kept);
    top-k applies first, top-p to what it leaves.

    The nucleus is the sort-based one: with the row's logits sorted descending z_1 >= ... >= z_V, p_j =
    exp(z_j - max) / sum_v exp(z_v - max) (the full-vocabulary softmax) and before_j = p_1 + ... + p_(j-1), the
    cutoff is min{z_j : before_j < top_p} and every token with logit >= cutoff is kept (all the ties of the cutoff
    value too). It is found without sorting the vocabulary (nucleus_cutoff): the sorted order is built a prefix at
    a time, lax.top_k(K) for each K in `prefilters`, each block's cumulative mass continuing
    the previous block's, and it stops at the first prefix whose mass reaches top_p in every row. That is exact:
    every position after a prefix has before_j >= the prefix's mass (the terms are >= 0 and float rounding is
    monotone), so once the mass reaches top_p no later position can lower the cutoff; top_k's values are the sort's
    first K values, and a block's arithmetic does not depend on which stage stops, so the cutoff is the same bit
    for bit as when every stage runs (nucleus_cutoff's run_all_stages). Past the last prefix the cutoff is found by
    bisection on the threshold (_bisect_cutoff: exact up to the same rounding caveat, no sort). Against the former
    single cumsum over the whole sorted row only the rounding order differs (the normaliser sums the unsorted row,
    the cumulative sum goes block by block), which can move the cutoff only where a prefix mass lies within float
    rounding of top_p (top_p = 0.99 or 0.9999 with the boundary in a long tail of tokens of ~1e-6 or less), where
    neither order is the more exact. The mass is summed in float32 (at least) whatever the logits' dtype.

    Cost: one lax.top_k(max(64, top_k)) and one exp-sum over the vocabulary while the top 64 tokens hold top_p of
    the mass in every row (the usual case at top_p = 0.95); else also lax.top_k(1024); only a batch with a row
    flatter than that pays the bisection (32 masked sums over the vocabulary), and only at that step (lax.cond).
    Jitted, [8, 262144] float32 on 2 CPU cores: ~11 ms, ~22 ms with top_k(1024), ~180 ms bisecting (a full sort
    took ~790 ms), against ~740-820 ms for the sort every step before; with top_k = 20 ~13 ms (the old top-k
    filter's slice of the top_k result made XLA sort the row too: _top_values)."""
    neg = jnp.finfo(logits_BV.dtype).min
    V = logits_BV.shape[-1]
    top_BK = None
    if top_k:
        # one top_k serves the top-k filter and the first top-p prefix (masking below kth is monotone, so the masked
        # row's top values are these, masked the same way)
        first = min(V, *prefilters) if top_p < 1.0 and prefilters else 0
        top_BK = _top_values(logits_BV, max(top_k, first))
        kth_B1 = top_BK[..., top_k - 1: top_k]
        logits_BV = jnp.where(logits_BV < kth_B1, neg, logits_BV)
        top_BK = jnp.where(top_BK < kth_B1, neg, top_BK)
    if top_p < 1.0:
        cutoff_B1, _ = nucleus_cutoff(logits_BV, top_p, prefilters=prefilters, top_BK=top_BK)
        logits_BV = jnp.where(logits_BV < cutoff_B1, neg, logits_BV)
    return logits_BV


def nucleus_cutoff(logits_BV, top_p, *, prefilters: tuple[int, ...] = TOP_P_PREFILTERS, top_BK=None,
                   run_all_stages: bool = False):
    """(cutoff_B1, stage): the top-p cutoff of filter_logits (keep logits >= cutoff) and which prefix settled it,
    an int32 scalar: i for the i-th size of sorted({min(k, V) for k in prefilters} | {V}), the last being the
    whole vocabulary (bisection). top_BK, optional: the row's top values already at hand (descending, as
    lax.top_k gives them), the first prefix. top_p may be traced. run_all_stages (for tests): go on to the last
    stage whatever the mass, which must give the same cutoff."""
    V = logits_BV.shape[-1]
    sizes = sorted({min(k, V) for k in prefilters} | {V})
    if top_BK is not None:
        sizes = [top_BK.shape[-1]] + [k for k in sizes if k > top_BK.shape[-1]]
    acc = jnp.promote_types(logits_BV.dtype, jnp.float32)

    def top(i):
        if sizes[i] == V and i:
            return None
        if i == 0 and top_BK is not None:
            return top_BK
        if sizes[i] == V:
            return jnp.flip(jnp.sort(logits_BV, axis=-1), axis=-1)
        return _top_values(logits_BV, sizes[i])

    first_BK = top(0)
    max_B1 = first_BK[..., :1].astype(acc)
    total_B1 = jnp.sum(jnp.exp(logits_BV.astype(acc) - max_B1), axis=-1, keepdims=True)

    def stage(i, vals_BK, cutoff_B1, mass_B1):
        if sizes[i] == V and i:      # past every prefix: the threshold by bisection, no sort
            # Rows whose prefixes already hold top_p keep their cutoff (bit for bit what stopping earlier gives).
            bisected_B1 = jnp.minimum(cutoff_B1, _bisect_cutoff(logits_BV, max_B1, total_B1, top_p))
            return jnp.where(mass_B1 >= top_p, cutoff_B1, bisected_B1), jnp.int32(i)
        block_BK = vals_BK[..., sizes[i - 1] if i else 0:]
        probs_BK = jnp.exp(block_BK.astype(acc) - max_B1) / total_B1
        cum_BK = jnp.cumsum(probs_BK, axis=-1)
        before_BK = mass_B1 + (cum_BK - probs_BK)          # mass strictly before each position; the first is 0
        cutoff_B1 = jnp.minimum(cutoff_B1, jnp.min(jnp.where(before_BK < top_p, block_BK, jnp.inf), axis=-1,
                                                   keepdims=True))
        if i == len(sizes) - 1:
            return cutoff_B1, jnp.int32(i)
        mass_B1 = mass_B1 + cum_BK[..., -1:]
        return jax.lax.cond(jnp.all(mass_B1 >= top_p) & (not run_all_stages), lambda: (cutoff_B1, jnp.int32(i)),
                            lambda: stage(i + 1, top(i + 1), cutoff_B1, mass_B1))

    return stage(0, first_BK, jnp.full_like(max_B1, jnp.inf, dtype=logits_BV.dtype), jnp.zeros_like(max_B1))


def _sortable(x_BV):
    """float32 -> int32 keys in the same order (negative floats: the magnitude bits flipped); an involution."""
    i = jax.lax.bitcast_convert_type(x_BV, jnp.int32)
    return jnp.where(i < 0, i ^ jnp.int32(0x7FFFFFFF), i)


def _bisect_cutoff(logits_BV, max_B1, total_B1, top_p):
    """The nucleus cutoff min{z : mass of the tokens with logit > z < top_p} without a sort: 32 halvings of the
    rows' float32 key range, each one masked sum over the vocabulary. The mass above a threshold only changes at a
    logit of the row, so the smallest key that satisfies it is a logit's own key: the cutoff is a value of the row,
    ties included, as the sort gives it. Cost: 32 passes over [B, V] (~180 ms for 8 x 262,144 on 2 cores, against
    ~790 ms for the sort)."""
    z_BV = logits_BV.astype(jnp.float32)
    probs_BV = jnp.exp(z_BV - max_B1.astype(jnp.float32)) / total_B1.astype(jnp.float32)
    keys_BV = _sortable(z_BV)
    lo_B1 = jnp.min(keys_BV, axis=-1, keepdims=True)
    hi_B1 = jnp.max(keys_BV, axis=-1, keepdims=True)       # nothing is above the max: always in the nucleus

    def halve(_, bounds):
        lo, hi = bounds
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)        # floor((lo + hi) / 2) without int32 overflow
        above = jnp.sum(jnp.where(keys_BV > mid, probs_BV, 0.0), axis=-1, keepdims=True)
        ok = above < top_p
        return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

    _, hi_B1 = jax.lax.fori_loop(0, 32, halve, (lo_B1, hi_B1))
    cutoff_B1 = jax.lax.bitcast_convert_type(_sortable(hi_B1), jnp.float32)
    return cutoff_B1.astype(logits_BV.dtype)


def _top_values(logits_BV, k: int):
    """lax.top_k's values, behind an optimization barrier: XLA lowers top_k to a sort followed by a slice and
    turns that back into a partial top-k only while nothing else is folded into the slice (XLA:CPU, jaxlib 0.10.2:
    a slice [k-1:k] of the result, as the top-k filter takes, or the result minus its own first column then
    cumsum, made it sort all 262,144 entries, ~800 ms instead of ~6 ms)."""
    return jax.lax.optimization_barrier(jax.lax.top_k(logits_BV, k)[0])


def gumbel_max(rng, logits_BV):
    """jax.random.categorical(rng, logits_BV, axis=-1), token for token (the same Gumbel noise, the same first index
    of the maximum, a NaN counting as the maximum as in jnp.argmax), with the argmax as a max and then a first-index
    min. XLA:CPU (jaxlib 0.10.2) fuses the noise into argmax's (value, index) reduction and runs that loop slowly:
    [4, 262,144] float32, ~20-26 ms for categorical against ~7 ms here."""
    x_BV = jax.random.gumbel(rng, logits_BV.shape, logits_BV.dtype) + logits_BV
    max_B1 = jnp.max(x_BV, axis=-1, keepdims=True)
    nan_BV = jnp.isnan(x_BV)    # XLA:CPU's max may skip NaNs; argmax's answer is then the first NaN
    hit_BV = jnp.where(jnp.any(nan_BV, axis=-1, keepdims=True), nan_BV, x_BV == max_B1)
    index_BV = jax.lax.broadcasted_iota(jnp.int32, x_BV.shape, x_BV.ndim - 1)
    return jnp.min(jnp.where(hit_BV, index_BV, x_BV.shape[-1]), axis=-1)


def next_tokens(logits_BV, rng, params: SamplingParams):
    """(tokens_B, logp_B, floor_B): the chosen tokens, their log-probability under the distribution actually
    sampled, and that distribution's support as a floor on the scaled logits.

    The sampled distribution is softmax(logits / T) renormalised over the top-k / top-p support, so logp_B is
    log softmax(filtered logits / T)[token]; with top_k = 0 and top_p = 1 that is plain softmax(logits / T), TRL's
    and vLLM's number. floor_B is the smallest scaled logit z = logit / T in the support (-inf without top-k/top-p):
    the support is exactly {v : z_v >= floor}, ties at the boundary included, so a trainer that recomputes the
    log-prob with the same floor (losses.common.hidden_logprobs `floor_BT`) renormalises over the same tokens.
    Greedy decoding reports log softmax(logits)[argmax] and floor -inf."""
    temperature = params.temperature if not params.greedy else 1.0
    scaled_BV = logits_BV.astype(jnp.float32) / temperature
    floor_B = jnp.full(scaled_BV.shape[:1], -jnp.inf, jnp.float32)
    if params.greedy:
        tokens_B = jnp.argmax(scaled_BV, axis=-1)
    else:
        filtered_BV = filter_logits(scaled_BV, top_k=params.top_k, top_p=params.top_p)
        tokens_B = gumbel_max(rng, filtered_BV)
        if params.top_k or params.top_p < 1.0:
            kept_BV = filtered_BV > jnp.finfo(filtered_BV.dtype).min
            floor_B = jnp.min(jnp.where(kept_BV, scaled_BV, jnp.inf), axis=-1)
            scaled_BV = filtered_BV
    logp_B = jnp.take_along_axis(jax.nn.log_softmax(scaled_BV, axis=-1), tokens_B[:, None], axis=-1)[:, 0]
    return tokens_B.astype(jnp.int32), logp_B, floor_B
