"""What every loss shares: token log-probs over a chunked vocabulary, the `Loss` sums, aggregation, batch layout.

Batch layout (the contract between data/, step.py and the objectives). A batch is a dict of arrays; B rows, T tokens.
Log-prob alignment: column t of `logp_BT` scores token t+1 given tokens 0..t, and the last column is 0. Every
`loss_mask` is aligned with `logp_BT`, not with the tokens: `loss_mask_BT[:, t] = 1` when token t+1 is a completion
token. (TRL's `completion_mask` is aligned with the tokens; ours is `completion_mask[:, 1:]` padded with one 0.)

SFT
    tokens_BT      int32   prompt + completion, padded
    mask_BT        int32   1 for real tokens, 0 for padding; in packed rows (data/packing.py) the document's
                           segment id 1, 2, ... (attention stays inside a segment, positions restart)
    loss_mask_BT   int32   1 where token t+1 is a completion token
DPO  (2B rows in one forward pass: rows [0, B) are the chosen completions, rows [B, 2B) the rejected ones, pair i
     being rows i and B+i, as TRL concatenates `[chosen; rejected]`)
    tokens_BT, mask_BT, loss_mask_BT      as for SFT, with 2B rows
    ref_chosen_B, ref_rejected_B  float32 summed reference log-probs of the completions, from `dpo.reference_logps`
KTO
    tokens_BT, mask_BT, loss_mask_BT      as for SFT
    label_B        int32   1 desirable, 0 undesirable
    kl_tokens_BT, kl_mask_BT, kl_loss_mask_BT   mismatched pairs: row i holds prompt i with the completion of row
                   i-1 (mod B) of the same per-device batch, TRL's rotate-by-one (the KL reference point z0)
    ref_logp_B, ref_kl_B          float32 summed reference log-probs, from `kto.reference_logps`
    kto_z0         float32 scalar, optional: the reference point over the whole global batch (kto.global_fields);
                   without it the objective uses the micro-batch's own (see kto.py)
GRPO  (one row per completion: the rollout's R = prompts x G rows, group members adjacent; built by rl/rollout.py)
    tokens_BT, mask_BT    prompt + completion, padded
    loss_mask_BT          1 where token t+1 is a completion token (EOS included); 0 on whole rows that leave the
                          loss (truncated completions under mask_truncated_completions, padding rows)
    advantage_B    float32 the completion's advantage (rl/advantages.py), already normalised over its group
    sampler_logp_BT float32 log q: the sampler's log-prob of token t+1 under softmax(logits / T), 0 elsewhere
    support_floor_BT float32 optional, with top-k/top-p sampling: the support each token was drawn from (scaled
                   logits >= floor, sampling.methods.next_tokens); every trainer-side log-prob uses it, so π_θ, π_old
                   and π_ref are distributions over the tokens the sampler could draw
    old_logp_BT    float32 optional: log π_old recomputed by the trainer at rollout time; present only when the
                   rollout batch is reused (num_iterations or mini_batches > 1). Absent: π_old = sg(π_θ).
    ref_logp_BT    float32 log π_ref (temperature applied), from `grpo.reference_logps`, only when beta > 0
PPO   (the GRPO fields, and)
    old_logp_BT    float32 always present (PPO's epochs reuse the rollout)
    advantage_BT   float32 per-token GAE advantages, whitened, 0 off the completion (replaces advantage_B)
    return_BT      float32 GAE returns A + V_old
    old_value_BT   float32 V_old, the value of the prefix ending at token t (the state before token t+1)
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from jax import Array

# 8192 columns of float32 logits cost 32 KiB per token: 256 MiB for 8k tokens, whatever the vocabulary (262k for
# Gemma 3, where the full [B, T, V] logits would be 8 GiB for the same tokens).
VOCAB_CHUNK = 8192

# The sampler's logits (KV cache) and the trainer's (full forward) differ by float rounding, about 1e-6 relative in
# float32: the token at the top-k/top-p cutoff must not drop out of the trainer's support for a rounding error. A
# token the sampler excluded re-enters only if its logit is within this (relative) slack of the cutoff's.
FLOOR_SLACK = 2e-5

Aggregation = Literal["token_mean", "seq_mean_token_mean", "seq_sum_const"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Loss:
    """Sums, never means, so that micro-batches and hosts combine exactly: the loss is `total / count`.

    `metrics` holds sums too; each metric's docstring in the producing loss names its denominator (usually `count`).
    A metric whose denominator is 0 over the whole batch (KTO's rewards/rejected in a batch of desirable rows only)
    has no mean: `metric_means` gives NaN for it, and the metrics log omits it from that line (metrics_log.py).
    Summing (metric, denominator) pairs before dividing is also what averages such a metric over only the
    micro-batches that have rows for it, each weighted by its own denominator.
    """

    total: Array
    count: Array
    metrics: dict[str, Array]
    # (metric, name of the metric that is its denominator) for metrics not averaged over `count`, e.g. KTO's
    # rewards/chosen over desirable rows. Static: the same for every micro-batch, so it survives lax.scan.
    denominators: tuple[tuple[str, str], ...] = dataclasses.field(default=(), metadata={"static": True})
    # Metrics that are maxima, not sums (RL's max |log π_old - log q|): combined by max over micro-batches and
    # reported as they are. A maximum over no element is -inf (the identity of max), reported as NaN.
    maxima: tuple[str, ...] = dataclasses.field(default=(), metadata={"static": True})

    @property
    def value(self) -> Array:
        return self.total / jnp.maximum(self.count, 1.0)

    def metric_means(self) -> dict[str, Array]:
        """Each metric sum over its denominator (`count`, or the one named in `denominators`), NaN where that
        denominator is 0 (an average over no element is undefined, not 0); maxima as they are, NaN where -inf
        (none taken). The denominator metrics themselves are counts, not reported. Call on sums over the whole
        global batch (`combine`). Shapes: scalars in, scalars out; runs under jit (no key is dropped here)."""
        own = dict(self.denominators)
        counts = set(own.values())
        out = {}
        for k, v in self.metrics.items():
            if k in counts:
                continue
            if k in self.maxima:
                out[k] = jnp.where(v > -jnp.inf, v, jnp.nan)        # comparisons with a Python float keep v's dtype
            else:
                out[k] = safe_mean(v, self.metrics[own[k]] if k in own else self.count)
        return out

    def combine(self) -> Loss:
        """A Loss stacked over micro-batches [M] -> the global batch's: sums add, `maxima` take the max."""
        metrics = {k: v.max(0) if k in self.maxima else v.sum(0) for k, v in self.metrics.items()}
        return dataclasses.replace(self, total=self.total.sum(0), count=self.count.sum(0), metrics=metrics)


def safe_mean(total: Array, count: Array) -> Array:
    """total / count, or NaN where count is 0: the mean of an empty set is undefined, and a 0 in its place reads as
    a measured value (a summed log-prob of exactly 0). For metrics only; a loss keeps total / max(count, 1) so that
    an empty batch contributes 0 and no NaN reaches the gradient."""
    total, count = jnp.asarray(total), jnp.asarray(count)
    some = count > 0
    # The where inside keeps 0/0 out of the computation, so nothing warns or propagates NaN through a gradient.
    return jnp.where(some, total / jnp.where(some, count, 1), jnp.nan)


def aggregate(per_tok_BT: Array, mask_BT: Array, mode: Aggregation, *,
              const: float | None = None) -> tuple[Array, Array]:
    """Reduce per-token losses to `(total, count)` so that `sum(total) / sum(count)` over micro-batches equals the
    full-batch loss. The three modes are the ones in use across RL post-training frameworks (see maxtext#4025):

    - "token_mean": sum over tokens / number of tokens (TRL SFT, DAPO). count = tokens.
    - "seq_mean_token_mean": per-sequence token mean, then mean over sequences (GRPO's original form); a sequence
      with no tokens counts with loss 0, as TRL's clamp(min=1) does. count = sequences.
    - "seq_sum_const": per-sequence sum / const (Dr.GRPO, const = max completion length). count = sequences.
    """
    mask_BT = mask_BT.astype(per_tok_BT.dtype)
    masked_BT = per_tok_BT * mask_BT
    if mode == "token_mean":
        return masked_BT.sum(), mask_BT.sum()
    num_seqs = jnp.asarray(per_tok_BT.shape[0], per_tok_BT.dtype)
    if mode == "seq_mean_token_mean":
        per_seq_B = masked_BT.sum(-1) / jnp.maximum(mask_BT.sum(-1), 1.0)
        return per_seq_B.sum(), num_seqs
    if mode == "seq_sum_const":
        if const is None or const <= 0:
            raise ValueError(f"aggregate mode 'seq_sum_const' needs const > 0, got const={const}")
        return masked_BT.sum() / const, num_seqs
    raise ValueError(f"unknown aggregation mode {mode!r}; expected one of {Aggregation.__args__}")


def kl_estimate(logp_BT: Array, ref_BT: Array, estimator: str) -> Array:
    """Per-token estimates of KL(π || π_ref) from tokens sampled from π (Schulman 2020, "Approximating KL
    divergence"), with d = log π_ref - log π: k1 = -d, k2 = d²/2, k3 = e^d - d - 1 (TRL's, unclamped)."""
    d_BT = ref_BT - logp_BT
    if estimator == "k1":
        return -d_BT
    if estimator == "k2":
        return 0.5 * d_BT ** 2
    if estimator == "k3":
        return jnp.exp(d_BT) - d_BT - 1.0
    raise ValueError(f"unknown kl_estimator {estimator!r}; expected 'k1', 'k2' or 'k3'")


def next_token_targets(tokens_BT: Array, mask_BT: Array) -> tuple[Array, Array]:
    """Targets aligned with `logp_BT` (column t holds token t+1) and where they are valid: the target and its
    context token both real and of one segment (a packed row's next document is not predicted from the last). The
    last column has no target and is never valid."""
    targets_BT = jnp.concatenate([tokens_BT[:, 1:], jnp.zeros_like(tokens_BT[:, :1])], axis=1)
    same_BT = (mask_BT[:, :-1] > 0) & (mask_BT[:, :-1] == mask_BT[:, 1:])
    valid_BT = jnp.concatenate([same_BT, jnp.zeros_like(same_BT[:, :1])], axis=1)
    return targets_BT, valid_BT


def logprobs_from_logits(logits_BTV: Array, targets_BT: Array,
                         temperature: float = 1.0) -> Array:
    """log softmax(logits / temperature)[target], position by position, with no shift and no mask: the caller
    aligns `targets_BT` with the logits (samplers: the sampled token; losses: `next_token_targets`)."""
    logp_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32) / temperature, axis=-1)
    return jnp.take_along_axis(logp_BTV, targets_BT[..., None], axis=-1)[..., 0]


def token_logprobs(model, tokens_BT: Array, mask_BT: Array, *, temperature: float = 1.0,
                   vocab_chunk: int = VOCAB_CHUNK, floor_BT: Array | None = None) -> Array:
    """Log-prob of each next token under `model`, aligned so that `logp_BT[:, t] = log p(tokens[t+1] | tokens[<=t])`;
    the last column, and any position whose target or context token is padding, is 0 (see `hidden_logprobs`)."""
    return hidden_logprobs(model, model.hidden(tokens_BT, mask_BT), tokens_BT, mask_BT, temperature=temperature,
                           vocab_chunk=vocab_chunk, floor_BT=floor_BT)


def hidden_logprobs(model, h_BTD: Array, tokens_BT: Array, mask_BT: Array, *, temperature: float = 1.0,
                    vocab_chunk: int = VOCAB_CHUNK, entropy: bool = False,
                    floor_BT: Array | None = None) -> Array | tuple[Array, Array]:
    """`token_logprobs` from the final hidden states h_BTD = model.hidden(tokens_BT, mask_BT), for callers that
    also read h (PPO's value head on the policy trunk). With entropy=True, returns (logp_BT, entropy_BT): the entropy
    H_t = logZ - E_p[z] of softmax(logits / T) at each position, nats, 0 where logp is 0.

    The vocabulary is walked in chunks of `vocab_chunk` columns with a running logsumexp (the online-softmax
    recurrence), so at most [B, T, vocab_chunk] float32 logits exist at once, in the forward and, thanks to the
    rematerialised scan body, in the backward pass too. A vocabulary that is not a multiple of the chunk ends with
    one static remainder chunk, so no column is counted twice and the model's slice never runs past the end. The
    entropy rides the same recurrence: a running Σ exp(z - max)·z, rescaled whenever the max grows.

    floor_BT (the sampler's top-k/top-p support, sampling.methods.next_tokens): at position t only the columns with
    z = logit / T >= floor_BT[t] enter the normaliser and the entropy, so the log-prob is that of the distribution
    the sampler drew from (renormalised over its support); -inf keeps every column. The cutoff has a rounding
    slack (FLOOR_SLACK), so the token at the cutoff stays in although the two forward passes round differently.
    """
    targets_BT, valid_BT = next_token_targets(tokens_BT, mask_BT)
    return target_logprobs(model, h_BTD, targets_BT, valid_BT, temperature=temperature, vocab_chunk=vocab_chunk,
                           entropy=entropy, floor_BT=floor_BT)


def window_logprobs(model, tokens_BT: Array, mask_BT: Array, index_BW: Array, *, temperature: float = 1.0,
                    vocab_chunk: int = VOCAB_CHUNK) -> Array:
    """`token_logprobs` read at the columns index_BW only (-1 = none; data.batches.loss_positions): logp_BW[b, w] =
    logp_BT[b, index_BW[b, w]], 0 where the index is -1. The decoder runs over every token; the vocabulary
    projection, the costliest part of a small model with a large vocabulary, over W columns instead of T."""
    h_BTD = model.hidden(tokens_BT, mask_BT)
    h_BWD, targets_BW, valid_BW, _ = gather_loss_columns(h_BTD, tokens_BT, mask_BT, index_BW, {})
    return target_logprobs(model, h_BWD, targets_BW, valid_BW, temperature=temperature, vocab_chunk=vocab_chunk)


def gather_loss_columns(h_BTD: Array, tokens_BT: Array, mask_BT: Array, index_BW: Array, batch: dict[str, Array]):
    """(h_BWD, targets_BW, valid_BW, fields): the hidden states, next-token targets and their validity at the
    columns index_BW (-1 = none), and every per-token field of `batch` (a key ending in "_BT" other than the token
    rows themselves: loss mask, sampler log-probs, support floors, old and reference log-probs) gathered at the
    same columns, under the same names, with the loss mask 0 where the index is -1. A loss written over [B, T]
    columns then runs unchanged over the W gathered ones: every sum over a row's tokens is the same."""
    at_BW = jnp.maximum(index_BW, 0)
    targets_BT, valid_BT = next_token_targets(tokens_BT, mask_BT)
    take = lambda x: jnp.take_along_axis(x, at_BW, axis=1)
    h_BWD = jnp.take_along_axis(h_BTD, at_BW[..., None], axis=1)
    fields = {k: take(v) for k, v in batch.items() if k.endswith("_BT") and k not in ("tokens_BT", "mask_BT")}
    if "loss_mask_BT" in fields:
        fields["loss_mask_BT"] = jnp.where(index_BW >= 0, fields["loss_mask_BT"], 0)
    return h_BWD, take(targets_BT), take(valid_BT) & (index_BW >= 0), {**batch, **fields}


def target_logprobs(model, h_BTD: Array, targets_BT: Array, valid_BT: Array, *, temperature: float = 1.0,
                    vocab_chunk: int = VOCAB_CHUNK, entropy: bool = False,
                    floor_BT: Array | None = None) -> Array | tuple[Array, Array]:
    """The chunked-vocabulary core of `hidden_logprobs`: log softmax(model.logits(h) / T)[target] wherever valid_BT,
    else 0 (and the entropy, with entropy=True), for hidden states already aligned with their targets."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if vocab_chunk <= 0:
        raise ValueError(f"vocab_chunk must be > 0, got {vocab_chunk}")
    vocab_size = model.cfg.vocab_size

    def fold(carry, start, size):
        """Fold the logits of columns [start, start+size) into (running max, Σ exp, Σ exp·z, target logit)."""
        max_BT, sumexp_BT, sumz_BT, target_BT = carry
        z_BTC = model.logits(h_BTD, start, size).astype(jnp.float32) / temperature
        picked_BT = jnp.take_along_axis(z_BTC, jnp.clip(targets_BT - start, 0, size - 1)[..., None], axis=-1)[..., 0]
        if floor_BT is not None:
            # Columns off the support count as the lowest float: exp(lowest - max) is 0 once any column is in, and
            # a chunk with none in leaves the sums at 0 (its exp(0) terms are masked), so nothing is inf or NaN.
            keep_BTC = z_BTC >= (floor_BT - FLOOR_SLACK * (1.0 + jnp.abs(floor_BT)))[..., None]
            z_BTC = jnp.where(keep_BTC, z_BTC, jnp.finfo(jnp.float32).min)
        new_max_BT = jnp.maximum(max_BT, z_BTC.max(-1))
        rescale_BT = jnp.exp(max_BT - new_max_BT)
        e_BTC = jnp.exp(z_BTC - new_max_BT[..., None])
        if floor_BT is not None:
            e_BTC = jnp.where(keep_BTC, e_BTC, 0.0)
        sumexp_BT = sumexp_BT * rescale_BT + e_BTC.sum(-1)
        if entropy:
            sumz_BT = sumz_BT * rescale_BT + (e_BTC * z_BTC).sum(-1)
        offset_BT = targets_BT - start
        in_chunk_BT = (offset_BT >= 0) & (offset_BT < size)
        target_BT = target_BT + jnp.where(in_chunk_BT, picked_BT, 0.0)
        return new_max_BT, sumexp_BT, sumz_BT, target_BT

    shape = targets_BT.shape
    zeros = lambda: jnp.zeros(shape, jnp.float32)
    # The running max starts at the lowest float, not -inf, so that lowest - lowest = 0 (not NaN) when a floor
    # excludes a whole chunk; without a floor the first chunk's max replaces it either way.
    carry = (jnp.full(shape, jnp.finfo(jnp.float32).min, jnp.float32), zeros(), zeros(), zeros())
    chunk = min(vocab_chunk, vocab_size)
    num_full, remainder = divmod(vocab_size, chunk)
    if num_full == 1:
        carry = fold(carry, 0, chunk)
    else:
        # Remat: without it the backward pass keeps every chunk's logits, i.e. the full [B, T, V] we avoid.
        body = jax.checkpoint(lambda c, start: (fold(c, start, chunk), None), prevent_cse=False)
        carry, _ = jax.lax.scan(body, carry, jnp.arange(num_full, dtype=jnp.int32) * chunk)
    if remainder:
        carry = fold(carry, num_full * chunk, remainder)
    max_BT, sumexp_BT, sumz_BT, target_BT = carry
    log_z_BT = max_BT + jnp.log(sumexp_BT)
    logp_BT = jnp.where(valid_BT, target_BT - log_z_BT, 0.0)
    if not entropy:
        return logp_BT
    return logp_BT, jnp.where(valid_BT, log_z_BT - sumz_BT / sumexp_BT, 0.0)


def completion_logps(model, tokens_BT: Array, mask_BT: Array, loss_mask_BT: Array, *,
                     temperature: float = 1.0) -> Array:
    """Summed log-prob of each row's completion tokens (not length-averaged), the quantity DPO and KTO compare."""
    logp_BT = token_logprobs(model, tokens_BT, mask_BT, temperature=temperature)
    return (logp_BT * loss_mask_BT.astype(logp_BT.dtype)).sum(-1)
