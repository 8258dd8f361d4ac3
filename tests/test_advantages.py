"""rl/advantages.py against independent references: TRL's GRPO/RLOO code paths in torch, plain loops, numpy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from caujax.rl.advantages import gae, group_advantages, rloo_advantages, whiten, zero_spread

TOL64 = 1e-12
P, G = 8, 3                                         # one rollout shape for the group tests: each jit compiles once


def trl_grpo_reference(rewards_R, G, scale, ddof):
    """TRL 1.16 GRPOTrainer (sum_then_normalize) on finite rewards, with torch.std for the std."""
    r = torch.tensor(rewards_R, dtype=torch.float64)
    mean = r.view(-1, G).mean(1).repeat_interleave(G)
    if scale == "batch":
        std = r.std(unbiased=ddof == 1).expand_as(r)
    else:
        std = r.view(-1, G).std(1, unbiased=ddof == 1).repeat_interleave(G)
    adv = r - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    return adv.numpy()


def trl_grpo_nan_reference(rewards_R, G, scale, ddof):
    """TRL's NaN-aware path: torch.nanmean, nanstd, nan_to_num. TRL's `nanstd` (trl/trainer/utils.py) is Bessel
    with NaN below 2 values; here torch.std over the non-NaN values, NaN when there are ddof or fewer of them.
    (TRL's own nanstd takes its Bessel factor count / (count - 1) from integer counts in torch's default float32,
    so in float64 it matches this only to ~3e-8 relative.)"""
    r = torch.tensor(rewards_R, dtype=torch.float64)

    def nanstd(x):
        x = x[~torch.isnan(x)]
        return x.std(unbiased=ddof == 1) if len(x) > ddof else torch.tensor(float("nan"), dtype=x.dtype)

    mean = torch.nanmean(r.view(-1, G), dim=1).repeat_interleave(G)
    if scale == "batch":
        s = nanstd(r).expand_as(r)
    else:
        s = torch.stack([nanstd(g) for g in r.view(-1, G)]).repeat_interleave(G)
    adv = r - mean
    if scale != "none":
        adv = adv / (s + 1e-4)
    return torch.nan_to_num(adv, nan=0.0).numpy()


def random_rewards(seed, P, G):
    rng = np.random.default_rng(seed)
    r = rng.normal(0.5, 2.0, (P, G))
    r[-1] = 1.0                                     # one zero-spread group with an exactly representable mean
    return r.reshape(-1)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("ddof", [1, 0])
def test_group_advantages_match_trl(scale, ddof):
    r = random_rewards(0, P, G)
    expected = trl_grpo_reference(r, G, scale, ddof)
    with jax.enable_x64(True):
        got = group_advantages(jnp.asarray(r), G, scale=scale, ddof=ddof)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=TOL64)
    if (scale, ddof) == ("group", 1):               # the float32 path, and a call from inside another jit
        got32 = jax.jit(lambda x: group_advantages(x, G))(r.astype(np.float32))
        assert got32.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got32), expected, rtol=1e-4, atol=1e-4)


def test_group_advantages_hand_value():
    # group [1, 0]: mean 0.5, Bessel std sqrt(0.5); group [2, 2]: zero spread.
    got = np.asarray(group_advantages(np.array([1.0, 0.0, 2.0, 2.0]), 2))
    a = 0.5 / (np.sqrt(0.5) + 1e-4)
    np.testing.assert_allclose(got, [a, -a, 0.0, 0.0], rtol=1e-6)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("ddof", [1, 0])
def test_zero_spread_groups_get_exact_zero(scale, ddof):
    r = random_rewards(5, P, G)
    r[:3] = 0.1
    assert np.mean(r[:3]) != 0.1                    # the naive r - mean would leave rounding residue here
    with jax.enable_x64(True):
        got = np.asarray(group_advantages(r, G, scale=scale, ddof=ddof))
        np.testing.assert_array_equal(np.asarray(zero_spread(r, G)), [True] + [False] * (P - 2) + [True])
    assert np.all(got[:G] == 0.0) and np.all(got[-G:] == 0.0) and np.all(got[G:-G] != 0.0)


def test_zero_spread_vs_python():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 2, (40, 3)).astype(np.float64)
    r[rng.random(r.shape) < 0.2] = np.nan
    r[5] = np.nan
    expected = [len({v for v in row if not np.isnan(v)}) <= 1 for row in r]
    assert 0 < sum(expected) < len(expected)
    np.testing.assert_array_equal(np.asarray(zero_spread(r.reshape(-1), 3)), expected)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("ddof", [1, 0])
def test_nan_rewards_excluded_and_zero(scale, ddof):
    r = random_rewards(2, P, G).reshape(P, G)
    r[0, 1] = np.nan                                # one unscorable completion
    r[2, :2] = np.nan                               # a single scorable reward: std NaN under ddof=1
    r[3] = np.nan                                   # an all-NaN group
    r = r.reshape(-1)
    expected = trl_grpo_nan_reference(r, G, scale, ddof)
    with jax.enable_x64(True):
        got = np.asarray(group_advantages(r, G, scale=scale, ddof=ddof))
    assert np.all(np.isfinite(got))
    assert np.all(got[np.isnan(r)] == 0.0) and np.all(got[6:12] == 0.0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL64)


@pytest.mark.parametrize("ddof", [1, 0])
def test_group_size_one_gives_zero(ddof):
    got = np.asarray(group_advantages(np.array([3.0, -1.0, 2.0]), 1, ddof=ddof))
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="group_size=2"):
        group_advantages(np.zeros(5), 2)
    with pytest.raises(ValueError, match="group_size=0"):
        group_advantages(np.zeros(4), 0)
    with pytest.raises(ValueError, match="shape"):
        group_advantages(np.zeros((2, 2)), 2)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(np.zeros(4), 2, scale="global")
    with pytest.raises(ValueError, match="group_size=3"):
        zero_spread(np.zeros(4), 3)
    with pytest.raises(ValueError, match="group_size >= 2"):
        rloo_advantages(np.zeros(4), 1)
    with pytest.raises(ValueError, match="group_size=3"):
        rloo_advantages(np.zeros(4), 3)
    with pytest.raises(ValueError, match="same shape"):
        whiten(np.zeros((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        gae(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 4)), gamma=1.0, lam=0.95)


def rloo_direct(r, G):
    out = np.zeros_like(r)
    for g in range(len(r) // G):
        idx = range(g * G, g * G + G)
        for i in idx:
            others = [r[j] for j in idx if j != i and not np.isnan(r[j])]
            out[i] = 0.0 if np.isnan(r[i]) or not others else r[i] - np.mean(others)
    return out


def test_rloo_hand_value():
    np.testing.assert_allclose(np.asarray(rloo_advantages(np.array([0.0, 1.0, 2.0]), 3)), [-1.5, 0.0, 1.5])


@pytest.mark.parametrize("G", [2, 5])
def test_rloo_vs_direct_formula(G):
    rng = np.random.default_rng(G)
    r = rng.normal(0.0, 3.0, 8 * G)
    r[3] = np.nan
    r[G:2 * G - 1] = np.nan                         # group 1 keeps a single scorable reward
    with jax.enable_x64(True):
        got = np.asarray(rloo_advantages(r, G))
    np.testing.assert_allclose(got, rloo_direct(r, G), rtol=0, atol=TOL64)
    assert got[2 * G - 1] == 0.0
    if G == 2:
        got32 = rloo_advantages(r.astype(np.float32), G)
        assert got32.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got32), rloo_direct(r, G), rtol=1e-5, atol=1e-5)


def masked_whiten_reference(x, m, shift_mean, ddof):
    """TRL's masked_whiten (masked_mean, masked_var with Bessel), then masked_fill(~m, 0), in numpy."""
    n = m.sum()
    mean = (np.where(m, x, 0) * m).sum() / n
    var = (np.where(m, (x - mean) ** 2, 0)).sum() / n * (n / (n - ddof))
    out = (x - mean) / np.sqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return np.where(m, out, 0.0)


@pytest.mark.parametrize("shift_mean", [True, False])
@pytest.mark.parametrize("ddof", [1, 0])
def test_whiten_vs_numpy(shift_mean, ddof):
    rng = np.random.default_rng(4)
    x = rng.normal(2.0, 3.0, (4, 9))
    m = rng.random((4, 9)) < 0.6
    x[~m] = 1e6                                     # garbage off the mask must not enter the statistics
    expected = masked_whiten_reference(x, m, shift_mean, ddof)
    with jax.enable_x64(True):
        got = np.asarray(whiten(x, m.astype(np.int32), shift_mean=shift_mean, ddof=ddof))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL64)
    if ddof == 1:
        got32 = whiten(x.astype(np.float32), m, shift_mean=shift_mean, ddof=ddof)
        assert got32.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got32), expected, rtol=1e-5, atol=1e-5)


def test_whiten_degenerate_masks():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(np.asarray(whiten(x, np.zeros((2, 3)))), np.zeros((2, 3)))
    one = np.zeros((2, 3))
    one[1, 2] = 1
    got = np.asarray(whiten(x, one))                # Bessel with n = 1: undefined, NaN on the mask only
    assert np.isnan(got[1, 2]) and np.all(np.delete(got.reshape(-1), 5) == 0.0)


def span_masks(rng, B, T):
    """Rows with a prompt prefix of zeros, a completion span [s, e) of ones, then padding; plus edge rows."""
    m = np.zeros((B, T), np.int32)
    spans = [(0, T), (3, T), (T - 1, T), (2, 3), (0, 0)]
    while len(spans) < B:
        s = int(rng.integers(0, T - 1))
        spans.append((s, int(rng.integers(s + 1, T + 1))))
    for b, (s, e) in enumerate(spans[:B]):
        m[b, s:e] = 1
    return m, spans[:B]


def gae_loop(r, v, spans, gamma, lam):
    """Plain double loop, each row only over its span [s, e): V_e = 0 and A_e = 0."""
    adv, ret = np.zeros_like(r), np.zeros_like(r)
    for b, (s, e) in enumerate(spans):
        last = 0.0
        for t in reversed(range(s, e)):
            v_next = v[b, t + 1] if t + 1 < e else 0.0
            last = r[b, t] + gamma * v_next - v[b, t] + gamma * lam * last
            adv[b, t], ret[b, t] = last, last + v[b, t]
    return adv, ret


def random_rollout(seed, B=8, T=12):
    rng = np.random.default_rng(seed)
    m, spans = span_masks(rng, B, T)
    r = rng.normal(0.0, 1.0, (B, T))
    v = rng.normal(0.0, 1.0, (B, T))
    r[m == 0] = rng.normal(0.0, 100.0, int((m == 0).sum()))   # garbage off the mask must not leak
    v[m == 0] = rng.normal(0.0, 100.0, int((m == 0).sum()))
    return r, v, m, spans


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 1.0), (0.9, 0.0), (0.0, 0.7), (0.95, 0.9)])
def test_gae_vs_double_loop(gamma, lam):
    r, v, m, spans = random_rollout(int(gamma * 100 + lam * 10))
    exp_adv, exp_ret = gae_loop(r, v, spans, gamma, lam)
    with jax.enable_x64(True):
        adv, ret = gae(r, v, m, gamma=gamma, lam=lam)
        assert adv.dtype == ret.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(adv), exp_adv, rtol=0, atol=TOL64)
    np.testing.assert_allclose(np.asarray(ret), exp_ret, rtol=0, atol=TOL64)
    adv32, ret32 = gae(r.astype(np.float32), v.astype(np.float32), m, gamma=gamma, lam=lam)
    assert adv32.dtype == ret32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(adv32), exp_adv, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ret32), exp_ret, rtol=1e-4, atol=1e-4)


def test_gae_jitted_once_two_inputs():
    traces = []

    @jax.jit
    def f(r, v, m):
        traces.append(1)
        return gae(r, v, m, gamma=0.99, lam=0.95)

    for seed in (10, 11):
        r, v, m, spans = random_rollout(seed)
        exp_adv, exp_ret = gae_loop(r, v, spans, 0.99, 0.95)
        adv, ret = f(jnp.asarray(r, jnp.float32), jnp.asarray(v, jnp.float32), jnp.asarray(m))
        np.testing.assert_allclose(np.asarray(adv), exp_adv, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(ret), exp_ret, rtol=1e-4, atol=1e-4)
    assert len(traces) == 1


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8)])
def test_gae_matches_trl_ppo_loop(gamma, lam):
    """TRL's PPO loop over the whole padded response (left-padded prompts of width P), zeros on padding."""
    rng = np.random.default_rng(7)
    B, P, T = 6, 4, 14
    m = np.zeros((B, T), np.int32)
    for b in range(B):
        m[b, P:P + int(rng.integers(1, T - P + 1))] = 1
    r = np.where(m, rng.normal(0.0, 1.0, (B, T)), 0.0)
    v = np.where(m, rng.normal(0.0, 1.0, (B, T)), 0.0)
    rewards, values = torch.tensor(r[:, P:]), torch.tensor(v[:, P:])
    lastgaelam, reversed_adv, gen_length = 0, [], rewards.shape[1]
    for t in reversed(range(gen_length)):
        nextvalues = values[:, t + 1] if t < gen_length - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        reversed_adv.append(lastgaelam)
    trl_adv = torch.stack(reversed_adv[::-1], axis=1)
    trl_ret = (trl_adv + values).numpy()
    with jax.enable_x64(True):
        adv, ret = gae(r, v, m, gamma=gamma, lam=lam)
    real = m[:, P:] == 1
    np.testing.assert_allclose(np.asarray(adv)[:, P:][real], trl_adv.numpy()[real], rtol=0, atol=TOL64)
    np.testing.assert_allclose(np.asarray(ret)[:, P:][real], trl_ret[real], rtol=0, atol=TOL64)
    assert np.all(np.asarray(adv)[m == 0] == 0.0) and np.all(np.asarray(ret)[m == 0] == 0.0)
