"""PPO: the loss against LOSSES.md's formulas (numpy values, torch gradients), exact micro-batch accumulation, and
the ActorCritic (value head init, shared-trunk log-probs, separate critic copy, a jitted objective that learns)."""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from caujax.losses import ppo, token_logprobs
from caujax.losses.params import PPOParams
from caujax.models import Decoder, ModelConfig
from caujax.models.layout import is_matrix, path_parts
from caujax.rl import critic as ac_lib

PARAMS = PPOParams()                 # TRL 1.9: cliprange 0.2, cliprange_value 0.2, vf_coef 0.1
TOL = 1e-12                          # float64 loss against float64 numpy
GRAD_TOL = 1e-10                     # float64 gradients against torch autograd
CFG = ModelConfig.tiny("llama", vocab_size=128, compute_dtype="float32")
INVALID_LOGPROB = 1.0                # what TRL writes off the response; the loss must never read it

# Jitted once per shape and dtype (params static: a frozen dataclass), instead of op by op.
loss_fn = jax.jit(ppo.ppo_loss, static_argnums=3)
loss_grad = jax.jit(jax.grad(lambda lp, v, b, p: ppo.ppo_loss(lp, v, b, p).value, argnums=(0, 1)), static_argnums=3)


# --- LOSSES.md "PPO", Update, written out twice: numpy for values, torch (TRL's update lines) for gradients ------
def numpy_ppo(logp, values, b, p: PPOParams) -> dict[str, float]:
    m = b["loss_mask_BT"].astype(bool)
    ratio = np.exp(logp - b["old_logp_BT"])
    A, R, v_old = b["advantage_BT"], b["return_BT"], b["old_value_BT"]
    pg1, pg2 = -A * ratio, -A * np.clip(ratio, 1 - p.cliprange, 1 + p.cliprange)
    pg = np.maximum(pg1, pg2)
    vf1 = (values - R) ** 2
    vf2 = (np.clip(values, v_old - p.cliprange_value, v_old + p.cliprange_value) - R) ** 2
    vf = 0.5 * np.maximum(vf1, vf2)
    return {"loss": pg[m].mean() + p.vf_coef * vf[m].mean(), "policy_loss": pg[m].mean(), "value_loss": vf[m].mean(),
            "clip_ratio": (pg2 > pg1)[m].mean(), "value_clip_ratio": (vf2 > vf1)[m].mean(),
            "approx_kl": (0.5 * (logp - b["old_logp_BT"]) ** 2)[m].mean(), "ratio": ratio[m].mean(),
            "values": values[m].mean(), "returns": R[m].mean()}


def torch_ppo(logp, values, b, p: PPOParams):
    t = lambda k: torch.tensor(b[k], dtype=torch.float64)
    m = t("loss_mask_BT")
    masked_mean = lambda x: (x * m).sum() / m.sum()
    ratio = torch.exp(logp - t("old_logp_BT"))
    A, R, v_old = t("advantage_BT"), t("return_BT"), t("old_value_BT")
    pg = torch.max(-A * ratio, -A * torch.clamp(ratio, 1.0 - p.cliprange, 1.0 + p.cliprange))
    v_clip = torch.clamp(values, v_old - p.cliprange_value, v_old + p.cliprange_value)
    vf = 0.5 * masked_mean(torch.max((values - R) ** 2, (v_clip - R) ** 2))
    return masked_mean(pg) + p.vf_coef * vf


def random_case(seed: int, B: int = 8, T: int = 12):
    """Completion spans of different lengths (one row empty), log-ratios wide enough that |ρ - 1| > 0.2 is common,
    values often more than 0.2 from V_old. Off the mask every field holds what TRL leaves there."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((B, T))
    for i in range(B - 1):
        start = rng.integers(0, 4)
        mask[i, start:start + rng.integers(1, T - start)] = 1
    old_logp = -rng.exponential(1.5, (B, T))
    logp = old_logp + rng.normal(0.0, 0.4, (B, T))
    old_value = rng.normal(0.0, 1.0, (B, T))
    values = old_value + rng.normal(0.0, 0.4, (B, T))
    off = mask == 0
    logp[off] = old_logp[off] = INVALID_LOGPROB
    batch = {"loss_mask_BT": mask.astype(np.int32), "old_logp_BT": old_logp,
             "advantage_BT": np.where(off, 0.0, rng.normal(0.0, 1.0, (B, T))),
             "return_BT": old_value + rng.normal(0.0, 1.0, (B, T)), "old_value_BT": old_value}
    return logp, values, batch


def _x64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64 if np.asarray(x).dtype.kind == "f" else None), tree)


# --- tier (a): hand-computed ------------------------------------------------------------------------------------
def test_hand_computed_clipping_both_signs_and_masked_garbage():
    """ε = ε_v = 0.2, V_old = 0. Tokens: (A, ρ) = (+1, 1.5) clip binds; (-1, 0.5) binds; (+1, 0.5) and (-1, 1.5)
    do not, so pg = (-1.2 + 0.8 - 0.5 + 1.5) / 4 = 0.15 with clip_ratio 1/2. (V, R) = (1, 1): clipped 0.2 binds,
    ½·0.64; (0.1, 1): inside, ½·0.81; (-1, 1): unclipped 4 > 1.44 wins, ½·4; (0.5, 0): 0.25 > 0.04, ½·0.25, so
    vf = 2.85 / 4 = 0.7125 with value_clip_ratio 1/4; loss = 0.15 + 0.1 · 0.7125. The fifth token is off the mask
    with a log-ratio of 200 (exp overflows float32): it must change neither the loss nor make a NaN gradient."""
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    old = np.array([[-1.0, -2.0, -0.5, -3.0, -200.0]])
    logp = f32(old + np.log([[1.5, 0.5, 0.5, 1.5, 1.0]]) + np.array([[0, 0, 0, 0, 200.0]]))
    values = f32([[1.0, 0.1, -1.0, 0.5, 7.0]])
    batch = {"loss_mask_BT": jnp.asarray([[1, 1, 1, 1, 0]]), "old_logp_BT": f32(old),
             "advantage_BT": f32([[1.0, -1.0, 1.0, -1.0, 3.0]]), "return_BT": f32([[1.0, 1.0, 1.0, 0.0, -9.0]]),
             "old_value_BT": f32([[0.0, 0.0, 0.0, 0.0, 0.0]])}
    loss = loss_fn(logp, values, batch, PARAMS)
    means = loss.metric_means()
    assert float(loss.count) == 4
    np.testing.assert_allclose(float(loss.value), 0.15 + 0.1 * 0.7125, rtol=1e-6)
    np.testing.assert_allclose(float(means["policy_loss"]), 0.15, rtol=1e-5)
    np.testing.assert_allclose(float(means["value_loss"]), 0.7125, rtol=1e-6)
    np.testing.assert_allclose(float(means["clip_ratio"]), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(means["value_clip_ratio"]), 0.25, rtol=1e-6)
    g_logp, g_v = loss_grad(logp, values, batch, PARAMS)
    assert np.isfinite(g_logp).all() and np.isfinite(g_v).all()
    # Clipped tokens get no policy gradient; unclipped ones get -A ρ / 4. The value gradient is c_v/4 · (V - R) on
    # unclipped tokens (or where both branches agree), 0 where the clipped branch wins.
    np.testing.assert_allclose(np.asarray(g_logp[0]), [0, 0, -0.5 / 4, 1.5 / 4, 0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(g_v[0]), [0, 0.1 * -0.9 / 4, 0.1 * -2.0 / 4, 0.1 * 0.5 / 4, 0], atol=1e-7)


# --- tier (b): parity with the formulas --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("params", [PARAMS, PPOParams(cliprange=0.1, cliprange_value=0.5, vf_coef=0.5)])
def test_loss_and_metrics_match_numpy(seed, params):
    logp, values, batch = random_case(seed)
    ref = numpy_ppo(logp, values, batch, params)
    m = batch["loss_mask_BT"].astype(bool)
    ratio, A = np.exp(logp - batch["old_logp_BT"]), batch["advantage_BT"]
    # The case covers what it claims: the policy clip binds for A > 0 and for A < 0, the value clip binds.
    assert (m & (A > 0) & (ratio > 1 + params.cliprange)).any() and (m & (A < 0) & (ratio < 1 - params.cliprange)).any()
    assert ref["value_clip_ratio"] > 0
    entropy = np.random.default_rng(seed + 100).exponential(1.0, logp.shape)
    with jax.enable_x64(True):
        loss = loss_fn(*_x64((logp, values, batch)), params, entropy_BT=jnp.asarray(entropy))
        assert loss.total.dtype == jnp.float64
        means = {k: float(v) for k, v in loss.metric_means().items()}
        value = float(loss.value)
    assert abs(value - ref["loss"]) < TOL
    for k in ref.keys() - {"loss"}:
        assert abs(means[k] - ref[k]) < TOL, (k, means[k], ref[k])
    assert abs(means["entropy"] - entropy[m].mean()) < TOL
    assert set(means) == set(ref) - {"loss"} | {"entropy"}


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_matches_torch(seed):
    logp, values, batch = random_case(seed)
    lp_t = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    v_t = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    torch_ppo(lp_t, v_t, batch, PARAMS).backward()
    with jax.enable_x64(True):
        lp, v, b = _x64((logp, values, batch))
        g_logp, g_v = loss_grad(lp, v, b, PARAMS)
        g_logp, g_v = np.asarray(g_logp), np.asarray(g_v)
    assert np.abs(g_logp).max() > 0 and np.abs(g_v).max() > 0
    np.testing.assert_allclose(g_logp, lp_t.grad.numpy(), rtol=0, atol=GRAD_TOL)
    np.testing.assert_allclose(g_v, v_t.grad.numpy(), rtol=0, atol=GRAD_TOL)


# --- tier (c): invariance -----------------------------------------------------------------------------------------
def test_micro_batches_combine_to_the_full_batch():
    """8 rows with different token counts, as 4 micro-batches of 2: Loss sums stacked and combined equal the full
    batch's (a per-micro-batch mean would weight the short rows up)."""
    logp, values, batch = random_case(3)
    with jax.enable_x64(True):
        lp, v, b = _x64((logp, values, batch))
        full = loss_fn(lp, v, b, PARAMS)
        rows = lambda x, i: x[2 * i:2 * i + 2]
        parts = [loss_fn(rows(lp, i), rows(v, i), jax.tree.map(lambda x: rows(x, i), b), PARAMS)
                 for i in range(4)]
        combined = jax.tree.map(lambda *xs: jnp.stack(xs), *parts).combine()
        counts = [float(p.count) for p in parts]
        assert len(set(counts)) > 1, counts            # micro-batches of unequal size: the test can tell
        assert float(combined.count) == float(full.count)
        assert abs(float(combined.total) - float(full.total)) < TOL
        assert abs(float(combined.value) - float(full.value)) < TOL
        for k, x in full.metric_means().items():
            assert abs(float(combined.metric_means()[k]) - float(x)) < TOL, k
        mean_of_means = np.mean([float(p.value) for p in parts])
        assert abs(mean_of_means - float(full.value)) > 1e-6       # why sums: averaging the parts is wrong here


# --- ActorCritic on a tiny decoder --------------------------------------------------------------------------------
# Every model computation goes through the few jitted functions below (graphdef static), so each compiles once per
# critic layout; eager decoder calls would compile primitive by primitive.
TEMP = 0.7
VF_ONLY = dataclasses.replace(PARAMS, vf_coef=1.0)     # with A = 0 the loss is the value loss alone
LR = 0.02


@functools.partial(jax.jit, static_argnums=0)
def _forward(G, P, tokens, mask):
    return nnx.merge(G, P).forward(tokens, mask, temperature=TEMP)


@functools.partial(jax.jit, static_argnums=0)
def _policy_reference(G, P, tokens, mask):
    """token_logprobs of the policy at TEMP, and its plain full logits (for the numpy reference)."""
    policy = ac_lib.policy_of(nnx.merge(G, P))
    return token_logprobs(policy, tokens, mask, temperature=TEMP), policy(tokens, mask)


@functools.partial(jax.jit, static_argnums=0)
def _rollout_and_grad(G, P, tokens, mask):
    fields = ppo.rollout_fields(nnx.merge(G, P), tokens, mask, TEMP)
    total = lambda P: sum(x.sum() for x in ppo.rollout_fields(nnx.merge(G, P), tokens, mask, TEMP).values())
    return fields, jax.grad(total)(P)


@functools.partial(jax.jit, static_argnums=0)
def _sgd(G, P, batch):
    """One SGD step on the objective as step.py differentiates it (nnx.merge inside the jitted function)."""
    def value_and_loss(P):
        loss = ppo.objective(nnx.merge(G, P), batch, VF_ONLY)
        return loss.value, loss
    (value, loss), grads = jax.value_and_grad(value_and_loss, has_aux=True)(P)
    return jax.tree.map(lambda p, g: p - LR * g, P, grads), value, loss.metric_means(), grads


@pytest.fixture(scope="module")
def decoder():
    """(graphdef, params) of the tiny decoder, drawn with numpy into the abstract state (no init compiles):
    matrices N(0, 0.1), norm scales 1 ± 0.1."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Decoder(CFG, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)

    def draw(path, x):
        base, std = (0.0, 0.1) if is_matrix(path) else (1.0, 0.1)
        return jnp.asarray(base + std * rng.standard_normal(x.shape), x.dtype)
    return graphdef, jax.tree_util.tree_map_with_path(draw, abstract)


def _tokens():
    """Row 0 full, row 1 right-padded, row 2 left-padded, row 3 right-padded short; prompt = the first 4 real
    tokens, the rest completion."""
    B, T = 4, 12
    tokens = np.random.default_rng(0).integers(1, CFG.vocab_size, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int32)
    mask[1, 9:] = 0
    mask[2, :2] = 0
    mask[3, 7:] = 0
    real_before = np.cumsum(mask, 1) - mask
    completion = (mask == 1) & (real_before >= 4)
    loss_mask = np.concatenate([completion[:, 1:], np.zeros((B, 1), bool)], 1).astype(np.int32)
    return jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(loss_mask)


def _value_batch(G, P, return_value: float = 0.15):
    """A PPO batch from the model's own forward (old = current), A = 0, R = return_value on the completion."""
    tokens, mask, loss_mask = _tokens()
    logp, _, values = _forward(G, P, tokens, mask)
    return {"tokens_BT": tokens, "mask_BT": mask, "loss_mask_BT": loss_mask, "old_logp_BT": logp,
            "old_value_BT": values, "advantage_BT": jnp.zeros(tokens.shape, jnp.float32),
            "return_BT": return_value * loss_mask.astype(jnp.float32)}


def _leaves(state):
    return jax.tree_util.tree_leaves_with_path(state)


def _numpy_logp_entropy(logits, tokens, temperature):
    z = np.asarray(logits, np.float64) / temperature
    logp_all = z - z.max(-1, keepdims=True)
    logp_all -= np.log(np.exp(logp_all).sum(-1, keepdims=True))
    targets = np.concatenate([np.asarray(tokens)[:, 1:], np.zeros_like(tokens[:, :1])], 1)
    logp = np.take_along_axis(logp_all, targets[..., None], -1)[..., 0]
    return logp, -(np.exp(logp_all) * logp_all).sum(-1)


def test_head_starts_at_zero_and_shares_the_policy_trunk(decoder):
    G, P = ac_lib.wrap(*decoder, "head")
    model = nnx.merge(G, P)
    assert model.critic is None and ac_lib.policy_of(model) is model.policy
    tokens, mask, _ = _tokens()
    logp, entropy, values = _forward(G, P, tokens, mask)
    assert values.dtype == jnp.float32 and values.shape == tokens.shape
    np.testing.assert_array_equal(np.asarray(values), 0.0)
    ref_logp, logits = _policy_reference(G, P, tokens, mask)
    np.testing.assert_allclose(np.asarray(logp), np.asarray(ref_logp), rtol=0, atol=1e-6)
    # The same against full-vocabulary numpy at the temperature, and not at T = 1; entropy of softmax(z / T).
    valid = np.asarray(logp) != 0
    assert valid.sum() > 20
    np_logp, np_entropy = _numpy_logp_entropy(logits, tokens, TEMP)
    np_logp_t1, _ = _numpy_logp_entropy(logits, tokens, 1.0)
    np.testing.assert_allclose(np.asarray(logp)[valid], np_logp[valid], rtol=0, atol=1e-5)
    assert np.abs(np.asarray(logp)[valid] - np_logp_t1[valid]).max() > 1e-2
    np.testing.assert_allclose(np.asarray(entropy)[valid], np_entropy[valid], rtol=0, atol=1e-5)
    # The head's parameters and how weight decay sees them: the bias is exempt, the kernel is a matrix.
    head = {path_parts(k)[0]: is_matrix(k) for k, _ in _leaves(P) if path_parts(k)[0].startswith("value_")}
    assert head == {"value_kernel": True, "value_bias": False}
    assert P["value_kernel"].get_metadata()["out_sharding"] == ("embed",)
    assert P["value_kernel"][...].shape == (CFG.embed_dim,) and P["value_bias"][...].shape == ()


def test_rollout_fields_match_forward_and_carry_no_gradient(decoder):
    G, P = ac_lib.wrap(*decoder, "head")
    P["value_bias"] = P["value_bias"].replace(jnp.asarray(0.3, jnp.float32))     # nonzero values to compare
    tokens, mask, _ = _tokens()
    fields, grads = _rollout_and_grad(G, P, tokens, mask)
    logp, _, values = _forward(G, P, tokens, mask)
    assert set(fields) == {"old_logp_BT", "old_value_BT"}
    np.testing.assert_allclose(np.asarray(fields["old_logp_BT"]), np.asarray(logp), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fields["old_value_BT"]), np.asarray(values), rtol=0, atol=1e-5)
    # Values sit where logp does (a next token exists), 0 elsewhere.
    np.testing.assert_array_equal(np.asarray(values) != 0, np.asarray(logp) != 0)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads))


def test_head_gets_a_gradient_from_the_value_loss(decoder):
    G, P = ac_lib.wrap(*decoder, "head")
    batch = _value_batch(G, P)
    stepped, _, _, grads = _sgd(G, P, batch)
    assert np.abs(np.asarray(grads["value_kernel"][...])).max() > 0
    assert np.abs(np.asarray(grads["value_bias"][...])) > 0
    _, _, values = _forward(G, stepped, batch["tokens_BT"], batch["mask_BT"])
    assert np.abs(np.asarray(values)[np.asarray(batch["loss_mask_BT"]) == 1]).min() > 0


def test_model_critic_is_an_independent_copy(decoder):
    graphdef, params = decoder
    G, P = ac_lib.wrap(graphdef, params, "model")
    model = nnx.merge(G, P)
    assert isinstance(model.critic, Decoder) and ac_lib.policy_of(model) is model.policy
    plain = nnx.merge(graphdef, params)
    assert ac_lib.policy_of(plain) is plain
    pol, cri = _leaves(P["policy"]), _leaves(P["critic"])
    assert [k for k, _ in pol] == [k for k, _ in cri] and len(pol) > 0
    for (k, a), (_, b) in zip(pol, cri):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer(), k      # a copy, not an alias
    # Changing the policy in place leaves the critic as it was, and the params wrap() was given.
    before = [np.asarray(x).copy() for x in jax.tree.leaves(nnx.state(model.critic))]
    given = [np.asarray(x).copy() for x in jax.tree.leaves(params)]
    nnx.update(model.policy, jax.tree.map(lambda x: x + 1.0, nnx.state(model.policy)))
    after = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model.critic))]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(given, jax.tree.leaves(params)))
    assert not np.array_equal(np.asarray(model.policy.embed[...]), np.asarray(model.critic.embed[...]))
    with pytest.raises(ValueError, match="critic"):
        ac_lib.wrap(graphdef, params, "shared")


def test_model_critic_values_read_the_critic_trunk(decoder):
    """With a nonzero head: moving the critic's weights moves the values and not the log-probs; moving the
    policy's moves the log-probs and not the values."""
    G, P = ac_lib.wrap(*decoder, "model")
    P["value_kernel"] = P["value_kernel"].replace(jnp.ones((CFG.embed_dim,), jnp.float32))
    tokens, mask, _ = _tokens()
    forward = lambda P: [np.asarray(x) for x in _forward(G, P, tokens, mask)]
    shifted = lambda part: nnx.State({**P, part: jax.tree.map(lambda x: x * 1.5, P[part])})
    logp0, _, v0 = forward(P)
    logp_c, _, v_c = forward(shifted("critic"))
    logp_p, _, v_p = forward(shifted("policy"))
    np.testing.assert_array_equal(logp_c, logp0)
    np.testing.assert_array_equal(v_p, v0)
    assert np.abs(v_c - v0).max() > 1e-3 and np.abs(logp_p - logp0).max() > 1e-3


def test_jitted_objective_learns_the_value_loss(decoder):
    """objective() under jax.jit as step.py calls it; SGD on the value loss alone (A = 0, vf_coef 1) reduces it at
    every step, from ½ R² at V = 0. (The separate critic runs jitted in
    test_model_critic_values_read_the_critic_trunk; a second compile of the step for it would add a third to this
    file's time.)"""
    G, P = ac_lib.wrap(*decoder, "head")
    batch = _value_batch(G, P)
    losses = []
    for _ in range(5):
        P, value, metrics, _ = _sgd(G, P, batch)
        assert math.isclose(float(value), float(metrics["value_loss"]), rel_tol=1e-5)   # A = 0: pg is 0
        assert set(metrics) >= {"entropy", "approx_kl", "clip_ratio", "values", "returns"}
        losses.append(float(value))
    assert losses[0] == pytest.approx(0.5 * 0.15 ** 2, rel=1e-5)
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.6 * losses[0], losses


def test_sampler_agreement_and_sequence_mask():
    """With the sampler's log q in the batch: the agreement metrics are |log π_old - log q| over completion tokens,
    and sequence_mask drops exactly the rows whose mean gap passes the threshold, from the loss and from count."""
    from caujax.losses.params import RolloutParams

    logp, values, b = random_case(3)
    m = b["loss_mask_BT"].astype(bool)
    q = np.where(m, b["old_logp_BT"] + 0.01, 0.0)
    q[2] = np.where(m[2], b["old_logp_BT"][2] + 0.5, 0.0)            # row 2's sampler disagrees by 0.5 nats
    with jax.enable_x64(True):
        plain = PPOParams()
        masked = dataclasses.replace(plain, rollout=RolloutParams(n=1, correction="sequence_mask",
                                                                   correction_threshold=0.1))
        full = ppo.ppo_loss(jnp.asarray(logp), jnp.asarray(values), {**b, "sampler_logp_BT": q}, plain)
        dropped = ppo.ppo_loss(jnp.asarray(logp), jnp.asarray(values), {**b, "sampler_logp_BT": q}, masked)
        keep = np.arange(len(m)) != 2
        sliced = ppo.ppo_loss(jnp.asarray(logp[keep]), jnp.asarray(values[keep]),
                              {k: v[keep] for k, v in b.items()}, plain)
    means = full.metric_means()
    gap = np.abs(b["old_logp_BT"] - q)[m]
    assert np.isclose(float(means["agreement/logp_gap_mean"]), gap.mean(), rtol=1e-12)
    assert np.isclose(float(means["agreement/logp_gap_max"]), 0.5, rtol=1e-9)
    assert float(full.count) == m.sum() and float(dropped.count) == m[keep].sum()
    assert np.isclose(float(dropped.total), float(sliced.total), rtol=1e-12)
    assert np.isclose(float(dropped.metric_means()["agreement/masked_fraction"]), 1 / m.any(-1).sum(), rtol=1e-12)
