"""Top-p without the full sort (methods.filter_logits / nucleus_cutoff): the kept set of the sort-based nucleus on
peaked, flat, tied and bf16-rounded rows, small vocabularies included, whichever prefix settles it; the same
tokens, log-probs and floors from next_tokens; and the short prefix really is the path taken on peaked rows."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from caujax.sampling import SamplingParams
from caujax.sampling import methods
from caujax.sampling.methods import filter_logits, next_tokens, nucleus_cutoff


def _reference_filter(logits_BV, *, top_k: int, top_p: float):
    """The sort-based filter as it was: sort the whole vocabulary, softmax, one cumulative sum."""
    neg = jnp.finfo(logits_BV.dtype).min
    if top_k:
        kth_B1 = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
        logits_BV = jnp.where(logits_BV < kth_B1, neg, logits_BV)
    if top_p < 1.0:
        logits_BV = jnp.where(logits_BV < _reference_cutoff(logits_BV, top_p), neg, logits_BV)
    return logits_BV


def _reference_cutoff(logits_BV, top_p):
    sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
    probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
    before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
    return jnp.min(jnp.where(before_BV < top_p, sorted_BV, jnp.inf), axis=-1, keepdims=True)


ref_cutoff = jax.jit(_reference_cutoff)
new_cutoff = jax.jit(lambda x, p, prefilters, run_all: nucleus_cutoff(x, p, prefilters=prefilters,
                                                                       run_all_stages=run_all), static_argnums=(2, 3))
new_filter = jax.jit(filter_logits, static_argnames=("top_k", "top_p", "prefilters"))
ref_top_k = jax.jit(lambda x, top_k: _reference_filter(x, top_k=top_k, top_p=1.0), static_argnums=1)


def _kept(filtered):
    return np.asarray(filtered > jnp.finfo(filtered.dtype).min)


def _mass_before(x_BV):
    """float64: the softmax mass of the tokens with a strictly larger logit than each token's (finfo.min = out)."""
    x = np.asarray(x_BV, np.float64)
    p = np.exp(x - x.max(-1, keepdims=True))
    p[np.asarray(x_BV) == np.finfo(np.asarray(x_BV).dtype).min] = 0.0
    p /= p.sum(-1, keepdims=True)
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        order = np.argsort(-x[b], kind="stable")
        before = np.cumsum(p[b, order]) - p[b, order]
        out[b] = before[np.searchsorted(-x[b, order], -x[b], side="left")]   # at the first of a run of ties
    return out


def _assert_same_kept(got, ref, x_BV, top_p, where):
    """The kept sets are equal, but for tokens whose exact (float64) mass before them is within float32 rounding
    (1e-6) of top_p, which the single cumsum and the block-wise one may round either way: a long tail of tokens
    weighing ~1e-6 or less at top_p = 0.99 or 0.9999. Returns the number of tokens disputed."""
    diff = got != ref
    if diff.any():
        gap = np.abs(_mass_before(x_BV)[diff] - top_p)
        assert gap.max() <= 1e-6, f"{where}: {diff.sum()} tokens differ, mass before them {gap.max():.2e} from top_p"
    return int(diff.sum())


def _rows(kind, rng, B, V):
    """Logit rows: peaked (a few dominant tokens), flat (mass over thousands), tied (a few distinct values, the
    boundary inside a run of ties), bf16 (float32 rounded to bf16: many ties), mixed (one flat row in a peaked
    batch, which sends the whole batch to the later stages)."""
    if kind == "peaked":
        x = rng.normal(size=(B, V)) * 2
        x[np.arange(B)[:, None], rng.integers(0, V, (B, 5))] += rng.uniform(8, 14, (B, 5))
    elif kind == "flat":
        x = rng.normal(size=(B, V)) * 0.3
    elif kind == "tied":
        x = rng.integers(0, 6, size=(B, V)).astype(np.float64) * rng.uniform(0.5, 3)
        x -= np.log(V) * (x < 4)                 # the top values hold most of the mass, the boundary inside them
    elif kind == "bf16":
        x = np.asarray(jnp.asarray(rng.normal(size=(B, V)) * 4, jnp.bfloat16).astype(jnp.float32))
    else:
        x = rng.normal(size=(B, V)) * 2
        x[:, :3] += 12
        x[0] = rng.normal(size=V) * 0.2
    return jnp.asarray(x, jnp.float32)


KINDS = ("peaked", "flat", "tied", "bf16", "mixed")
TOP_PS = (0.05, 0.3, 0.6, 0.9, 0.95, 0.99, 0.9999)


def test_cutoff_equals_sort_based_nucleus():
    """Every kind of row, vocabularies of 3000, 40 and 7 (fewer than the 64 prefix), many top_p: the cutoff's kept
    set is the old single-sort one (up to float32 rounding at top_p near 1 over a long tail: _assert_same_kept),
    for the default prefixes and a cascade of small ones; and, when a prefix settles it, it is bit for bit the
    cutoff of the same cascade run down to the bisection."""
    stages, disputed, decisions = {}, 0, 0
    for B, V in ((16, 3000), (8, 40), (8, 7)):
        for kind in KINDS:
            rng = np.random.default_rng([B, V, len(kind)])
            x = _rows(kind, rng, B, V)
            for top_p in TOP_PS + (float(rng.uniform(0.01, 1.0)),):
                ref = np.asarray(x >= ref_cutoff(x, top_p))
                for prefilters in ((64, 1024), (2, 5, 17)):
                    cut, stage = new_cutoff(x, top_p, prefilters, False)
                    cut_all, last = new_cutoff(x, top_p, prefilters, True)
                    where = f"{kind} [{B}, {V}] top_p {top_p} prefilters {prefilters}"
                    if int(stage) < int(last):   # stopped early: bit for bit the cutoff of running every stage
                        np.testing.assert_array_equal(np.asarray(cut), np.asarray(cut_all), err_msg=where)
                    # (both bisected: two compiled programs may sum the tail in different orders; the kept set
                    # is checked against the sort below, with the same rounding allowance)
                    disputed += _assert_same_kept(np.asarray(x >= cut), ref, x, top_p, where)
                    decisions += B
                    stages.setdefault((V, prefilters), set()).add(int(stage))
                    assert int(last) == len({min(k, V) for k in prefilters} | {V}) - 1
    print(f"{disputed} tokens decided differently by rounding in {decisions} row decisions; stages {stages}")
    assert stages[(3000, (64, 1024))] == {0, 1, 2} and stages[(7, (64, 1024))] == {0}   # V = 7: one top_k(7)
    assert stages[(40, (2, 5, 17))] == {0, 1, 2, 3}


@pytest.mark.parametrize("V,cases", [
    (3000, [(3, 0.95, (64, 1024)), (20, 0.6, (64, 1024)), (20, 0.9999, (64, 1024)), (100, 0.95, (64, 1024)),
            (20, 0.9, (2, 5))]),
    (40, [(3, 0.6, (64, 1024)), (20, 0.95, (64, 1024)), (20, 0.95, (2, 5))])])
def test_top_k_then_top_p_equals_sort_based(V, cases):
    """filter_logits with top-k (its top_k values reused as the first prefix; ties at the k-th value keep more than
    k tokens, which can send the nucleus past the prefix), against the old filter; kept logits unchanged."""
    for top_k, top_p, prefilters in cases:
        for kind in ("peaked", "tied", "mixed"):
            x = _rows(kind, np.random.default_rng([V, top_k]), 12, V)
            masked = ref_top_k(x, top_k)
            ref = masked >= ref_cutoff(masked, top_p)
            got = new_filter(x, top_k=top_k, top_p=top_p, prefilters=prefilters)
            _assert_same_kept(_kept(got), np.asarray(ref), masked, top_p,
                              f"{kind} top_k {top_k} top_p {top_p} prefilters {prefilters}")
            np.testing.assert_array_equal(np.asarray(got)[_kept(got)], np.asarray(x)[_kept(got)])


def test_ties_straddling_the_boundary_are_all_kept():
    """The cutoff value's ties are kept where they lie beyond the prefix: 10 tokens tie at the cutoff, the 7-token
    prefix holds 4 of them and settles the cutoff."""
    x = np.full((1, 300), -30.0)
    x[0, :3] = 5.0
    x[0, 100:110] = 3.0         # mass: 0.69 before the first 3.0, 0.81 in the first 7 tokens, 0.93 after the last 3.0
    x = jnp.asarray(x, jnp.float32)
    ref = np.asarray(x >= ref_cutoff(x, 0.75))
    got = _kept(new_filter(x, top_k=0, top_p=0.75, prefilters=(7,)))
    assert ref.sum() == 13
    np.testing.assert_array_equal(got, ref)
    assert int(nucleus_cutoff(x, 0.75, prefilters=(7,))[1]) == 0


def test_mass_exactly_top_p_drops_the_token():
    """A token whose mass before it equals top_p exactly is out (strict <), as in the sort-based filter."""
    x = jnp.asarray([[2.0, 1.0, 0.5, 0.0]], jnp.float32)          # sorted already: both sum in the same order
    probs = jax.nn.softmax(x, axis=-1)
    top_p = float((jnp.cumsum(probs, axis=-1) - probs)[0, 2])     # the float32 mass before the third token
    ref = np.asarray(x >= ref_cutoff(x, top_p))
    assert ref.tolist() == [[True, True, False, False]]
    np.testing.assert_array_equal(_kept(new_filter(x, top_k=0, top_p=top_p)), ref)
    np.testing.assert_array_equal(_kept(new_filter(x, top_k=0, top_p=top_p, prefilters=(1,))), ref)


def test_bf16_logits_match_the_float32_nucleus():
    """bf16 logits: the mass is summed in float32, so the kept set is the float32 one of the same values."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3000)) * 3, jnp.bfloat16)
    for top_p in (0.5, 0.95):
        got = new_filter(x, top_k=0, top_p=top_p)
        assert got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(_kept(got), np.asarray(x >= ref_cutoff(x.astype(jnp.float32), top_p)))


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.6, 0, 0.95), (0.7, 20, 0.9), (1.0, 0, 0.5)])
def test_next_tokens_identical_to_sort_based(monkeypatch, temperature, top_k, top_p):
    """Same rng key, same logits: the same tokens, log-probs and floors as with the sort-based filter, under jit."""
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    run = lambda logits, key: next_tokens(logits, key, params)
    xs = [_rows(kind, np.random.default_rng(len(kind)), 16, 5000) for kind in ("peaked", "tied", "mixed")]
    keys = [jax.random.key(s) for s in range(3)]
    new_fn = jax.jit(run)
    new = [new_fn(x, k) for x in xs for k in keys]
    monkeypatch.setattr(methods, "filter_logits", _reference_filter)
    old_fn = jax.jit(lambda logits, key: run(logits, key))
    old = [old_fn(x, k) for x in xs for k in keys]
    for (t_new, lp_new, f_new), (t_old, lp_old, f_old) in zip(new, old):
        np.testing.assert_array_equal(np.asarray(t_new), np.asarray(t_old))
        np.testing.assert_array_equal(np.asarray(lp_new), np.asarray(lp_old))
        np.testing.assert_array_equal(np.asarray(f_new), np.asarray(f_old))
    assert np.isfinite(np.asarray(new[0][2])).all()


def test_gumbel_max_draws_what_categorical_draws():
    """The sampler's draw (methods.gumbel_max) is jax.random.categorical's, token for token, under jit: random and
    masked rows (finfo.min outside a top-p support), exact ties of the maximum (the first index wins), a NaN row."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5000)).astype(np.float32) * 3
    x[1, 100:] = np.finfo(np.float32).min                  # a support of 100 tokens, as filter_logits leaves it
    x[2] = 0.0                                             # ties everywhere: the noise decides
    x[3, 7] = np.nan                                       # garbage: argmax's first NaN
    x[4, :] = np.finfo(np.float32).min                     # nothing kept but the first index
    draw, reference = jax.jit(methods.gumbel_max), jax.jit(lambda k, l: jax.random.categorical(k, l, axis=-1))
    for seed in range(40):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(np.asarray(draw(key, x)), np.asarray(reference(key, x)))
    assert np.asarray(draw(jax.random.key(0), x))[3] == 7


def test_prefix_is_the_path_taken_on_peaked_rows():
    """Under jit: the top-64 prefix settles a peaked batch (stage 0); a batch with ~300 likely tokens needs
    top-1024 (stage 1); a flat one at top_p 0.99 the full sort (stage 2); one flat row sends the whole batch on."""
    rng = np.random.default_rng(1)
    V = 20_000
    stage = jax.jit(lambda x, p: nucleus_cutoff(x, p)[1])
    peaked = rng.normal(size=(8, V))
    peaked[:, :10] += 14
    middle = rng.normal(size=(8, V))
    middle[:, :300] += 12
    flat = rng.normal(size=(8, V)) * 0.1
    assert int(stage(jnp.asarray(peaked, jnp.float32), 0.95)) == 0
    assert int(stage(jnp.asarray(middle, jnp.float32), 0.95)) == 1
    assert int(stage(jnp.asarray(flat, jnp.float32), 0.99)) == 2
    peaked[3] = flat[3]
    assert int(stage(jnp.asarray(peaked, jnp.float32), 0.95)) == 2


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's top_k rewrite")
@pytest.mark.parametrize("top_k", [0, 20])
def test_no_full_sort_outside_the_fallback(top_k):
    """The compiled filter never sorts the whole row: its top_k calls stay partial top-k (methods._top_values;
    without the barrier XLA:CPU sorts the row for the top-k filter and the prefix) and the last stage bisects."""
    x = jnp.zeros((8, 32768), jnp.float32)
    hlo = jax.jit(lambda x: filter_logits(x, top_k=top_k, top_p=0.95)).lower(x).compile().as_text()
    full_sorts = re.findall(r"= f32\[8,32768\]\{1,0\} sort\(", hlo)
    assert len(full_sorts) == 0, hlo
