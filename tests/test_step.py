"""The train step: accumulated == full batch, 2x2x2 mesh == 1 device, remat changes nothing, the loss goes down."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from caujax.config import OptimConfig
from caujax.losses import dpo, kto, sft
from caujax.losses.common import completion_logps
from caujax.methods import METHODS
from caujax.models import Decoder, ModelConfig
from caujax.sharding import make_mesh
from caujax.step import (clip_by_global_norm, init_state, learning_rate, make_optimizer, make_train_step,
                         split_micro_batches)

TOL = 1e-5
CFG = ModelConfig.tiny("qwen2")
B, T = 8, 24                     # rows (pairs for DPO); M = 4 gives micro-batches of 2
KL_OFFSETS = np.array([4.0, 4.0, -2.0, -2.0, 1.0, 1.0, 3.0, 3.0], np.float32)   # per-micro-batch z0 4, 0, 1, 3


def _params(seed: int):
    """Random weights with the embedding scaled up (std 0.5, not 0.02): logits spread over several nats, so per-token
    losses differ between rows and a wrong averaging shows (with the init's near-uniform model every token costs
    about ln V, whatever the batch)."""
    graphdef, params = nnx.split(Decoder(CFG, rngs=nnx.Rngs(seed)))
    params["embed"] = params["embed"].replace(params["embed"][...] * 25.0)
    return graphdef, jax.tree.map(np.asarray, params)


def _rows(rs, n):
    """Prompt + completion rows of different lengths, right-padded: token means differ between micro-batches."""
    tokens = rs.randint(1, CFG.vocab_size, (n, T)).astype(np.int32)
    lengths = rs.randint(8, T + 1, n)
    prompt = rs.randint(2, 6, n)
    pos = np.arange(T)[None, :]
    mask = (pos < lengths[:, None]).astype(np.int32)
    loss_mask = ((pos >= prompt[:, None] - 1) & (pos < lengths[:, None] - 1)).astype(np.int32)
    return dict(tokens_BT=tokens * mask, mask_BT=mask, loss_mask_BT=loss_mask)


@pytest.fixture(scope="module")
def tiny():
    """graphdef, policy params, a different reference model's params, and one batch per method (numpy)."""
    graphdef, params = _params(0)
    _, ref_params = _params(1)
    rs = np.random.RandomState(0)
    batches = {"sft": _rows(rs, B), "dpo": _rows(rs, 2 * B)}
    rows, kl = _rows(rs, B), _rows(rs, B)
    policy = nnx.merge(graphdef, params)
    logp_B = np.asarray(completion_logps(policy, rows["tokens_BT"], rows["mask_BT"], rows["loss_mask_BT"]))
    logp_kl_B = np.asarray(completion_logps(policy, kl["tokens_BT"], kl["mask_BT"], kl["loss_mask_BT"]))
    # Cached reference fields chosen so that the global z0 (1.5) differs from every micro-batch's own.
    batches["kto"] = dict(rows, kl_tokens_BT=kl["tokens_BT"], kl_mask_BT=kl["mask_BT"],
                          kl_loss_mask_BT=kl["loss_mask_BT"], label_B=np.array([1, 0] * (B // 2), np.int32),
                          ref_logp_B=logp_B - rs.normal(0, 2, B).astype(np.float32), ref_kl_B=logp_kl_B - KL_OFFSETS)
    return graphdef, params, ref_params, batches


METHOD = {   # objective, reference, global_fields, row_blocks
    "sft": (functools.partial(METHODS["sft"].objective, params=sft.SFTParams()), None, None, 1),
    "dpo": (functools.partial(METHODS["dpo"].objective, params=dpo.DPOParams(beta=0.5)), dpo.reference_logps, None, 2),
    "kto": (functools.partial(METHODS["kto"].objective, params=kto.KTOParams(beta=1.0)), None, kto.global_fields, 1),
}


def _run(tiny, method, M, mesh, tx, steps=1, graphdef=None):
    graphdef_, params, ref_params, batches = tiny
    objective, reference, global_fields, row_blocks = METHOD[method]
    state, sharding = init_state(params, tx, mesh, seed=0)
    step_fn = make_train_step(objective, tx, graphdef=graphdef or graphdef_, state_sharding=sharding, mesh=mesh,
                              num_micro_batches=M, reference=reference, global_fields=global_fields,
                              row_blocks=row_blocks)
    history = []
    for _ in range(steps):
        state, metrics = step_fn(state, batches[method], ref_params if reference else None)
        history.append(jax.tree.map(float, metrics))
    return jax.tree.map(np.asarray, state.params), history


@functools.cache
def _one_device():
    return make_mesh(devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def sgd_steps(tiny):
    """One plain-SGD step per (method, M): its parameter change is the gradient itself, so an accumulation error
    shows (Adam's first step is about lr * sign(g), which would hide one)."""
    cache = {}

    def get(method, M, mesh_shape=(1, 1, 1)):
        key = (method, M, mesh_shape)
        if key not in cache:
            mesh = _one_device() if mesh_shape == (1, 1, 1) else make_mesh(*mesh_shape)
            cache[key] = _run(tiny, method, M, mesh, optax.sgd(1.0))
        return cache[key]
    return get


def _max_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_accumulating_4_micro_batches_equals_the_full_batch(sgd_steps, tiny, method):
    params0 = tiny[1]
    full, [m_full] = sgd_steps(method, 1)
    accum, [m_accum] = sgd_steps(method, 4)
    moved, diff = _max_diff(full, params0), _max_diff(full, accum)
    print(f"{method}: loss {m_full['loss']:.6f} vs {m_accum['loss']:.6f}; params moved {moved:.2e}, "
          f"|full - accumulated| = {diff:.2e}")
    assert moved > 100 * TOL            # the step did something the comparison can see
    assert diff <= TOL
    assert m_full["loss"] == pytest.approx(m_accum["loss"], abs=TOL)
    assert m_full["count"] == m_accum["count"]


def test_sft_batch_is_sensitive_to_per_micro_batch_means(tiny):
    """The control for the test above: averaging the 4 micro-batch means (optax.MultiSteps) gives another loss."""
    graphdef, params, _, batches = tiny
    model = nnx.merge(graphdef, params)
    mbs = split_micro_batches({k: jnp.asarray(v) for k, v in batches["sft"].items()}, 4)
    losses = [METHOD["sft"][0](model, jax.tree.map(lambda x: x[m], mbs)) for m in range(4)]
    token_mean = sum(float(l.total) for l in losses) / sum(float(l.count) for l in losses)
    mean_of_means = np.mean([float(l.value) for l in losses])
    assert abs(token_mean - mean_of_means) > 1e-3


def test_kto_reference_point_spans_the_global_batch(sgd_steps):
    """z0 is the mean of the KL log-ratios over all 8 rows, 1.5, not any micro-batch's own (4, 0, 1 or 3)."""
    for M in (1, 4):
        _, [metrics] = sgd_steps("kto", M)
        assert metrics["kl"] == pytest.approx(float(KL_OFFSETS.mean()), abs=1e-4)


def test_dpo_micro_batches_keep_pairs_together():
    tokens = jnp.arange(8)[:, None] * jnp.ones((1, 3), jnp.int32)          # rows 0..3 chosen, 4..7 rejected
    mbs = split_micro_batches({"tokens_BT": tokens, "ref_chosen_B": jnp.arange(4)}, 2, row_blocks=2)
    np.testing.assert_array_equal(mbs["tokens_BT"][:, :, 0], [[0, 1, 4, 5], [2, 3, 6, 7]])
    np.testing.assert_array_equal(mbs["ref_chosen_B"], [[0, 1], [2, 3]])


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_step_on_2x2x2_mesh_equals_one_device(sgd_steps, tiny, method):
    assert len(jax.devices()) == 8, "conftest.py should fake 8 CPU devices"
    single, [m1] = sgd_steps(method, 1)
    sharded, [m8] = sgd_steps(method, 2, (2, 2, 2))
    diff = _max_diff(single, sharded)
    print(f"{method} on 2x2x2 mesh (M=2) vs 1 device: |params diff| = {diff:.2e}, "
          f"loss {m8['loss']:.6f} vs {m1['loss']:.6f}")
    assert diff <= TOL and m1["loss"] == pytest.approx(m8["loss"], abs=TOL)


@pytest.mark.parametrize("policy", ["full", "save_dots", "save_attention"])
def test_remat_gives_the_same_step(sgd_steps, tiny, policy):
    """Every remat policy (models/config.py REMAT_POLICIES) only trades memory for FLOPs: the same step."""
    remat_graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(CFG.replace(remat=policy), rngs=nnx.Rngs(0))))
    remat, _ = _run(tiny, "sft", 1, _one_device(), optax.sgd(1.0), graphdef=remat_graphdef)
    plain, _ = sgd_steps("sft", 1)
    assert _max_diff(remat, plain) <= TOL


def test_loss_is_finite_and_decreases_with_bf16_compute_and_f32_master_weights(tiny):
    graphdef, _ = nnx.split(nnx.eval_shape(
        lambda: Decoder(CFG.replace(compute_dtype="bfloat16", remat="full"), rngs=nnx.Rngs(0))))
    tx = make_optimizer(OptimConfig(lr=1e-2, warmup_ratio=0.2, max_grad_norm=1.0), total_steps=6)
    params, history = _run(tiny, "sft", 2, _one_device(), tx, steps=6, graphdef=graphdef)
    losses = [h["loss"] for h in history]
    print("sft losses:", " ".join(f"{x:.4f}" for x in losses))
    assert all(np.isfinite(losses))
    assert all(p.dtype == np.float32 for p in jax.tree.leaves(params))
    assert losses[-1] < losses[0] - 0.05
    assert losses[1] == losses[0]       # warmup: step 0 runs at learning rate 0


def test_schedule_warmup_then_cosine_to_floor():
    lr = learning_rate(OptimConfig(lr=1.0, warmup_ratio=0.1, min_lr_ratio=0.1, schedule="cosine"), total_steps=100)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(0.5) and float(lr(10)) == pytest.approx(1.0)
    assert float(lr(55)) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-6)        # half-way through the cosine
    assert float(lr(100)) == pytest.approx(0.1)
    linear = learning_rate(OptimConfig(lr=1.0, schedule="linear"), total_steps=10)
    assert float(linear(5)) == pytest.approx(0.5)


def test_weight_decay_skips_norms_and_biases(tiny):
    """Told by path, not rank: stacked norm scales [L, D] and biases [L, N, H] are 2-D and 3-D, and still exempt."""
    _, params, _, _ = tiny
    tx = make_optimizer(OptimConfig(lr=1.0, weight_decay=0.5, max_grad_norm=None), total_steps=1)
    zeros = jax.tree.map(np.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    norm = updates["layers"]["attn_norm"]["scale"][...]
    bias = updates["layers"]["attn"]["q_bias"][...]
    matrix = updates["layers"]["mlp"]["up"][...]
    assert norm.ndim == 2 and bias.ndim == 3
    assert not np.any(norm) and not np.any(bias) and not np.any(updates["final_norm"]["scale"][...])
    np.testing.assert_allclose(matrix, -0.5 * params["layers"]["mlp"]["up"][...], rtol=1e-6)


@pytest.mark.parametrize("ratio", [0.5, 2.0])     # max_norm below the gradient's norm (clipped), above (left alone)
def test_clipped_step_equals_optax_on_the_mean_gradient(tiny, ratio):
    """The step hands the clip ‖Σg‖ / n from its float32 sum (step.clip_by_global_norm): the update must be
    optax.clip_by_global_norm's on the mean gradient, and the logged grad_norm its norm."""
    graphdef, params, _, batches = tiny
    objective = METHOD["sft"][0]

    def mean_loss(p):
        loss = objective(nnx.merge(graphdef, p), {k: jnp.asarray(v) for k, v in batches["sft"].items()})
        return loss.total / loss.count
    grads = jax.grad(mean_loss)(params)
    norm = float(optax.tree.norm(grads))
    clipped, _ = optax.clip_by_global_norm(ratio * norm).update(grads, optax.EmptyState())
    expected = jax.tree.map(lambda p, g: p - g, params, clipped)
    tx = optax.chain(clip_by_global_norm(ratio * norm), optax.sgd(1.0))
    stepped, [metrics] = _run(tiny, "sft", 2, _one_device(), tx)
    assert metrics["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert _max_diff(stepped, params) > 100 * TOL          # the step moved
    assert _max_diff(stepped, expected) <= TOL


def test_clip_by_global_norm_equals_optax_with_or_without_a_given_norm():
    rs = np.random.RandomState(0)
    tree = {"a": jnp.asarray(rs.normal(size=(3, 4)), jnp.float32), "b": jnp.asarray(rs.normal(size=5), jnp.float32)}
    norm = optax.tree.norm(tree)
    for max_norm in (0.5, 100.0):
        want, _ = optax.clip_by_global_norm(max_norm).update(tree, optax.EmptyState())
        for given in (None, norm):
            got, _ = clip_by_global_norm(max_norm).update(tree, optax.EmptyState(), global_norm=given)
            assert _max_diff(got, want) <= 1e-6
