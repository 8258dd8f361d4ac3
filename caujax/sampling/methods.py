"""Sampling parameters and next-token selection (greedy, temperature, top-k, top-p), all inside jit."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """What to sample. temperature == 0 means greedy. The CauGym protocol is n=5, temperature=0.6, top_p=0.95,
    max_new_tokens=8192 (DATA.md 1.7)."""

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


def filter_logits(logits_BV, *, top_k: int, top_p: float):
    """Mask to -inf every token outside the top-k and outside the top-p nucleus (ties at the boundary kept)."""
    neg = jnp.finfo(logits_BV.dtype).min
    if top_k:
        kth_B1 = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
        logits_BV = jnp.where(logits_BV < kth_B1, neg, logits_BV)
    if top_p < 1.0:
        sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
        probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
        # keep a sorted token if the mass strictly before it is < top_p; the first token is always kept
        before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
        cutoff_B1 = jnp.min(jnp.where(before_BV < top_p, sorted_BV, jnp.inf), axis=-1, keepdims=True)
        logits_BV = jnp.where(logits_BV < cutoff_B1, neg, logits_BV)
    return logits_BV


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
        tokens_B = jax.random.categorical(rng, filtered_BV, axis=-1)
        if params.top_k or params.top_p < 1.0:
            kept_BV = filtered_BV > jnp.finfo(filtered_BV.dtype).min
            floor_B = jnp.min(jnp.where(kept_BV, scaled_BV, jnp.inf), axis=-1)
            scaled_BV = filtered_BV
    logp_B = jnp.take_along_axis(jax.nn.log_softmax(scaled_BV, axis=-1), tokens_B[:, None], axis=-1)[:, 0]
    return tokens_B.astype(jnp.int32), logp_B, floor_B
