"""Issue 13, kind 5: an average over an empty set is absent, never 0. Each loss's metric means are NaN where their
denominator is 0 (Loss.metric_means), micro-batches combine by sums so that a metric is averaged over the rows of
the micro-batches that have any, and metrics.jsonl omits the key (no bare NaN token). The loss itself is unchanged.
"""
from __future__ import annotations

import functools
import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from caujax.losses import grpo, kto, ppo, sft
from caujax.losses.common import Loss, completion_logps, safe_mean
from caujax.losses.params import GRPOParams, KTOParams, PPOParams, RolloutParams
from caujax.metrics_log import MetricsLog
from caujax.models import Decoder, ModelConfig
from caujax.sharding import make_mesh
from caujax.step import init_state, make_train_step

BETA = 0.1
REJECTED = ("logps/rejected", "rewards/rejected")
CHOSEN = ("logps/chosen", "rewards/chosen")


def _stack(*losses: Loss) -> Loss:
    """Per-micro-batch Losses -> the global batch's, as the step's scan and `combine` do."""
    return jax.tree.map(lambda *x: jnp.stack(x), *losses).combine()


def _kto(labels, logp, ref, z0=0.0) -> Loss:
    return kto.kto_loss(jnp.asarray(logp, jnp.float32), jnp.asarray(ref, jnp.float32),
                        jnp.asarray(labels, jnp.int32), jnp.float32(z0), beta=BETA)


# --- the example: KTO with desirable rows only ----------------------------------------------------------
def test_kto_batch_of_desirable_rows_has_no_rejected_mean():
    logp, ref = np.array([-12.0, -7.5, -9.0, -3.0]), np.array([-11.0, -8.0, -9.5, -2.0])
    loss = _kto([1, 1, 1, 1], logp, ref)
    means = {k: float(v) for k, v in loss.metric_means().items()}
    assert all(math.isnan(means[k]) for k in REJECTED), means           # was 0.0: a summed log-prob of exactly 0
    assert means["logps/chosen"] == pytest.approx(logp.mean(), abs=1e-5)
    assert means["rewards/chosen"] == pytest.approx(BETA * (logp - ref).mean(), abs=1e-6)
    # The loss is what it was: mean over rows of 1 - σ(β(Δ - z0)), z0 = 0.
    expected = np.mean(1.0 - 1.0 / (1.0 + np.exp(-BETA * (logp - ref))))
    assert float(loss.value) == pytest.approx(expected, abs=1e-6)


def test_kto_batch_of_undesirable_rows_has_no_chosen_mean():
    logp, ref = np.array([-4.0, -6.0]), np.array([-5.0, -5.0])
    means = {k: float(v) for k, v in _kto([0, 0], logp, ref).metric_means().items()}
    assert all(math.isnan(means[k]) for k in CHOSEN), means
    assert means["logps/rejected"] == pytest.approx(-5.0, abs=1e-6)
    assert means["kl"] == 0.0                               # z0 over every row: defined, and 0 here


def test_kto_micro_batches_average_over_those_that_have_the_class():
    """Micro-batch 1 has no undesirable row, micro-batch 2 one of two: the batch's logps/rejected is that row's,
    not the mean of (0, it) that averaging per-micro-batch means would give."""
    first = _kto([1, 1], [-10.0, -20.0], [-10.0, -20.0])
    second = _kto([1, 0], [-30.0, -8.0], [-31.0, -6.0])
    means = {k: float(v) for k, v in _stack(first, second).metric_means().items()}
    assert means["logps/rejected"] == pytest.approx(-8.0, abs=1e-6)
    assert means["rewards/rejected"] == pytest.approx(BETA * -2.0, abs=1e-6)
    assert means["logps/chosen"] == pytest.approx(-20.0, abs=1e-5)     # three desirable rows, each weighing one


def test_safe_mean_is_nan_only_for_an_empty_set():
    assert float(safe_mean(jnp.float32(6.0), jnp.float32(3.0))) == 2.0
    assert float(safe_mean(jnp.float32(0.0), jnp.float32(2.0))) == 0.0          # a real mean of 0 stays 0
    assert math.isnan(float(safe_mean(jnp.float32(0.0), jnp.float32(0.0))))
    # No NaN leaks into a gradient through the unused branch.
    g = jax.grad(lambda t: jnp.nan_to_num(safe_mean(t, jnp.float32(0.0))))(jnp.float32(1.0))
    assert float(g) == 0.0


# --- every other method ------------------------------------------------------------------------------------------
def test_sft_batch_without_completion_tokens_has_no_nll_mean():
    logp = -jnp.ones((2, 5), jnp.float32)
    empty = sft.sft_loss(logp, jnp.zeros((2, 5), jnp.int32))
    assert math.isnan(float(empty.metric_means()["nll"])) and float(empty.value) == 0.0
    full = sft.sft_loss(logp, jnp.ones((2, 5), jnp.int32).at[:, -1].set(0))
    assert float(_stack(empty, full).metric_means()["nll"]) == pytest.approx(1.0)


def _grpo_batch(mask):
    B, T = mask.shape
    rs = np.random.RandomState(0)
    return {"loss_mask_BT": jnp.asarray(mask, jnp.int32), "advantage_B": jnp.asarray(rs.randn(B), jnp.float32),
            "sampler_logp_BT": jnp.asarray(-rs.uniform(0.1, 2, (B, T)), jnp.float32)}


@pytest.mark.parametrize("correction", ["none", "token_truncate", "sequence_mask"])
def test_grpo_batch_of_padding_rows_has_no_metric_means_and_maxima(correction):
    params = GRPOParams(rollout=RolloutParams(max_completion_length=6, correction=correction), beta=0.0)
    logp = jnp.asarray(-np.random.RandomState(1).uniform(0.1, 2, (2, 6)), jnp.float32)
    empty = grpo.grpo_loss(logp, _grpo_batch(np.zeros((2, 6))), params, entropy_BT=jnp.ones_like(logp))
    means = {k: float(v) for k, v in empty.metric_means().items()}
    assert means and all(math.isnan(v) for v in means.values()), means         # maxima included: none taken
    assert float(empty.value) == 0.0
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    full = grpo.grpo_loss(logp, _grpo_batch(mask), params, entropy_BT=jnp.ones_like(logp))
    alone = {k: float(v) for k, v in full.metric_means().items()}
    both = {k: float(v) for k, v in _stack(empty, full).metric_means().items()}
    assert both == pytest.approx(alone, abs=1e-6)                   # the empty micro-batch changes no mean or max
    assert alone["completion_length"] == 2.5 and alone["entropy"] == pytest.approx(1.0)


def test_ppo_batch_whose_rows_all_leave_the_loss_has_no_loss_metric_means():
    B, T = 2, 5
    rs = np.random.RandomState(2)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], np.int32)
    f = lambda: jnp.asarray(rs.randn(B, T), jnp.float32)
    batch = {"loss_mask_BT": jnp.asarray(mask), "old_logp_BT": f() - 2, "advantage_BT": f(), "return_BT": f(),
             "old_value_BT": f(), "sampler_logp_BT": f() - 9}          # far from π_old: every row is dropped
    params = PPOParams(rollout=RolloutParams(n=1, correction="sequence_mask", correction_threshold=0.5))
    loss = ppo.ppo_loss(f() - 2, f(), batch, params)
    means = {k: float(v) for k, v in loss.metric_means().items()}
    assert float(loss.count) == 0 and float(loss.value) == 0.0
    for k in ("policy_loss", "value_loss", "clip_ratio", "approx_kl", "ratio", "values", "returns"):
        assert math.isnan(means[k]), k
    # The sampler agreement is over every completion token, dropped rows included: defined.
    assert means["agreement/masked_fraction"] == 1.0 and means["agreement/logp_gap_max"] > 5


# --- the step: KTO with 2 micro-batches on a tiny model ----------------------------------------------------------
CFG = ModelConfig.tiny("qwen2")


def _kto_rows(labels, seed=0, T=12):
    rs = np.random.RandomState(seed)
    B = len(labels)
    tokens = rs.randint(1, CFG.vocab_size, (2 * B, T)).astype(np.int32)
    mask = np.ones((2 * B, T), np.int32)
    loss_mask = np.zeros((2 * B, T), np.int32)
    loss_mask[:, 3:-1] = 1
    return {"tokens_BT": tokens[:B], "mask_BT": mask[:B], "loss_mask_BT": loss_mask[:B],
            "kl_tokens_BT": tokens[B:], "kl_mask_BT": mask[B:], "kl_loss_mask_BT": loss_mask[B:],
            "label_B": np.asarray(labels, np.int32), "ref_logp_B": rs.normal(-40, 3, B).astype(np.float32),
            "ref_kl_B": rs.normal(-40, 3, B).astype(np.float32)}


@functools.cache
def _kto_step():
    graphdef, params = nnx.split(Decoder(CFG, rngs=nnx.Rngs(0)))
    mesh = make_mesh(devices=jax.devices()[:1])
    tx = optax.sgd(0.0)
    state, sharding = init_state(params, tx, mesh, seed=0)
    objective = functools.partial(kto.objective, params=KTOParams(beta=BETA))
    step = make_train_step(objective, tx, graphdef=graphdef, state_sharding=sharding, mesh=mesh,
                           num_micro_batches=2, global_fields=kto.global_fields)
    return graphdef, params, state, step


@pytest.mark.parametrize("labels", [[1, 1, 1, 1], [1, 1, 0, 1], [0, 0, 1, 0]])
def test_step_averages_each_class_over_its_own_rows(labels):
    """[1,1,1,1] is the issue's batch; [1,1,0,1] has the rejected class in micro-batch 2 only (one row of its two),
    [0,0,1,0] the chosen class likewise."""
    graphdef, params, state, step = _kto_step()
    batch = _kto_rows(labels)
    _, metrics = step(jax.tree.map(jnp.copy, state), batch, None)       # the state is donated
    metrics = {k: float(v) for k, v in metrics.items()}
    logp = np.asarray(completion_logps(nnx.merge(graphdef, params), batch["tokens_BT"], batch["mask_BT"],
                                       batch["loss_mask_BT"]))
    label = np.asarray(labels, bool)
    for side, rows in (("chosen", label), ("rejected", ~label)):
        if not rows.any():
            assert math.isnan(metrics[f"logps/{side}"]) and math.isnan(metrics[f"rewards/{side}"])
            continue
        assert metrics[f"logps/{side}"] == pytest.approx(logp[rows].mean(), rel=1e-5)
        reward = BETA * (logp[rows] - batch["ref_logp_B"][rows]).mean()
        assert metrics[f"rewards/{side}"] == pytest.approx(reward, rel=1e-4, abs=1e-5)
    assert math.isfinite(metrics["loss"]) and math.isfinite(metrics["kl"])


# --- the log: the key is absent, the line is strict JSON ----------------------------------------------------------
def _strict(text: str) -> dict:
    def refuse(token):
        raise ValueError(f"{token} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_metrics_log_omits_metrics_without_a_mean(tmp_path):
    line = {"step": 3, "loss": 0.5, "logps/rejected": float("nan"), "rewards/rejected": np.float32("nan"),
            "logps/chosen": -12.0, "count": 4, "flag": True}
    with MetricsLog(tmp_path, enabled=True) as log:
        log.write(line)
    [written] = [_strict(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert written == {"step": 3, "loss": 0.5, "logps/chosen": -12.0, "count": 4, "flag": True}
    assert line == written                         # what train.py keeps matches the file


def test_metrics_log_drops_an_infinite_metric_with_a_warning(tmp_path):
    with MetricsLog(tmp_path, enabled=True) as log, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log.write({"step": 1, "loss": 1.0, "agreement/is_weight_max": float("inf")})
    assert [_strict(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [{"step": 1, "loss": 1.0}]
    assert any("agreement/is_weight_max infinite" in str(w.message) for w in caught)


def test_kto_run_of_desirable_rows_logs_no_rejected_metrics(tmp_path):
    """The issue's example end to end: `python -m caujax.train --method kto` on configs/tiny.py with a .jsonl of
    desirable rows only; metrics.jsonl is strict JSON and has the chosen metrics but no rejected ones."""
    import pathlib

    from caujax import train
    from caujax.data.examples import generated_items, has_worked_solution
    from caujax.data.prompts import sft_target, user_message

    repo = pathlib.Path(__file__).resolve().parent.parent
    items = [it for it in generated_items(12, 0) if has_worked_solution(it)][:8]
    data = tmp_path / "desirable.jsonl"
    data.write_text("".join(json.dumps({"id": it.id, "prompt": user_message(it.problem), "completion": sft_target(it),
                                        "label": True}) + "\n" for it in items))
    run_dir = tmp_path / "run"
    lines = train.main(["--config", str(repo / "configs/tiny.py"), "--method", "kto", f"--run_dir={run_dir}",
                        "--steps=1", f"--data.source={data}", "--data.seq_len=256", "--model.arch.vocab_size=512",
                        "--export=false"])
    [logged] = [_strict(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert not set(REJECTED) & set(logged) and not set(REJECTED) & set(lines[0])
    assert all(math.isfinite(logged[k]) for k in CHOSEN) and logged["logps/chosen"] < 0
    assert logged["loss"] == pytest.approx(0.5, abs=1e-5)          # Δ = 0 and z0 = 0 at step 0: 1 - σ(0)
