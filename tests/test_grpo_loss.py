"""GRPO loss: parity with TRL 1.16's own `GRPOTrainer._compute_loss` on the same log-probs (float64, loss and
gradient), on-policy sanity values, exact micro-batch accumulation, rollout correction, and the objective on a
tiny decoder."""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from trl.trainer.grpo_trainer import GRPOTrainer

from caujax.losses import grpo
from caujax.losses.params import GRPOParams, RolloutParams
from caujax.models import Decoder, ModelConfig

TOL = 1e-12            # float64 against TRL on the same arrays: only summation order differs
METRIC_TOL = 1e-7      # TRL takes its clip fractions in float32 (`is_low_clipped.float()`)
P, C = 3, 7            # prompt and completion columns of TRL's tensors; ours have T = P + C columns
T = P + C
L_MAX = 9              # max_completion_length, != C so a dr_grpo denominator built from the array width shows

# TRL loss_type -> our (surrogate, aggregation)
LOSS_TYPES = {"dapo": ("clip", "token_mean"), "grpo": ("clip", "seq_mean_token_mean"),
              "dr_grpo": ("clip", "seq_sum_const"), "cispo": ("cispo", "token_mean")}


def to_ours(x_BC: np.ndarray) -> np.ndarray:
    """TRL's completion-aligned [B, C] -> our [B, T]: completion token j sits at column P + j, scored by column
    P - 1 + j (common.py layout); every other column is 0."""
    out = np.zeros((x_BC.shape[0], T), x_BC.dtype)
    out[:, P - 1:P - 1 + C] = x_BC
    return out


def completion_mask(lengths) -> np.ndarray:
    return (np.arange(C)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Rollout:
    """One batch in TRL's completion layout [B, C]; `batch()` gives ours."""
    logp: np.ndarray
    old: np.ndarray
    ref: np.ndarray
    q: np.ndarray
    entropy: np.ndarray
    adv: np.ndarray
    mask: np.ndarray

    def batch(self, stored_old: bool = True, beta: float = 0.0) -> dict[str, jnp.ndarray]:
        out = {"loss_mask_BT": jnp.asarray(to_ours(self.mask).astype(np.int32)), "advantage_B": jnp.asarray(self.adv),
               "sampler_logp_BT": jnp.asarray(to_ours(self.q))}
        if stored_old:
            out["old_logp_BT"] = jnp.asarray(to_ours(self.old))
        if beta > 0:
            out["ref_logp_BT"] = jnp.asarray(to_ours(self.ref))
        return out


def make_rollout(seed: int, lengths, spread: float = 0.3) -> Rollout:
    rng = np.random.default_rng(seed)
    B = len(lengths)
    logp = -rng.uniform(0.05, 3.0, (B, C))
    old = logp + spread * rng.standard_normal((B, C))          # ratios e^±0.3: both clip bounds bind somewhere
    ref = logp + 0.5 * rng.standard_normal((B, C))
    q = old + 0.2 * rng.standard_normal((B, C))
    entropy = rng.uniform(0.1, 2.0, (B, C))
    adv = rng.standard_normal(B)
    return Rollout(logp, old, ref, q, entropy, adv, completion_mask(lengths))


def make_params(loss_type="dapo", level="token", beta=0.0, delta=None, entropy_coef=0.0, eps_high=0.28, **rollout):
    surrogate, aggregation = LOSS_TYPES[loss_type]
    return GRPOParams(rollout=RolloutParams(max_completion_length=L_MAX, **rollout), beta=beta, epsilon_low=0.2,
                      epsilon_high=eps_high, delta=delta, importance_sampling_level=level, surrogate=surrogate,
                      aggregation=aggregation, entropy_coef=entropy_coef)


def run_loss(logp_BT, batch, params: GRPOParams, entropy_BT):
    """grpo_loss and the gradients of its `total` w.r.t. logp_BT and entropy_BT. Op by op, not jitted: the eager
    kernels are cached by shape across the parametrised cases, where a jit would compile once per params."""
    def total(logp_BT, entropy_BT):
        loss = grpo.grpo_loss(logp_BT, batch, params, entropy_BT=entropy_BT)
        return loss.total, loss
    (_, loss), grads = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(logp_BT, entropy_BT)
    return loss, grads


def ours(params: GRPOParams, batch, logp_BT, entropy_BT):
    """(loss value, d value / d logp, d value / d entropy, metric means), value = total / count."""
    loss, (g_logp, g_ent) = run_loss(logp_BT, batch, params, entropy_BT)
    n = float(loss.count)
    return (float(loss.value), np.asarray(g_logp) / n, np.asarray(g_ent) / n,
            {k: float(v) for k, v in loss.metric_means().items()})


# --- TRL 1.16 itself, on a stand-in trainer ---------------------------------------------------------------------
def trl_loss(r: Rollout, *, loss_type, level, beta, eps_low, eps_high, delta, entropy_coef, stored_old,
             is_ratio=None, bias_kl=False):
    """TRL's `_compute_loss` on `r`, one process, GA = 1, num_items_in_batch = the active token count: returns
    (loss, d loss / d logp [B, C], d loss / d entropy [B, C], logged metrics)."""
    logp = torch.tensor(r.logp, dtype=torch.float64, requires_grad=True)
    entropy = torch.tensor(r.entropy, dtype=torch.float64, requires_grad=True)
    B = r.logp.shape[0]
    acc = SimpleNamespace(num_processes=1, gather=lambda x: x, gather_for_metrics=lambda x: x,
                          reduce=lambda x, reduction: x, sync_gradients=True, device=torch.device("cpu"))
    me = SimpleNamespace(
        accelerator=acc, model=SimpleNamespace(training=True), _metrics={"train": defaultdict(list)},
        args=SimpleNamespace(use_bias_correction_kl=bias_kl, delta=delta, steps_per_generation=1),
        beta=beta, loss_type=loss_type, importance_sampling_level=level, epsilon_low=eps_low, epsilon_high=eps_high,
        max_completion_length=L_MAX, current_gradient_accumulation_steps=1, top_entropy_quantile=1.0,
        off_policy_mask_threshold=None, aux_loss_enabled=False, use_vllm=is_ratio is not None,
        vllm_importance_sampling_correction=is_ratio is not None, _entropy_bonus_enabled=entropy_coef != 0.0,
        entropy_coef=entropy_coef, use_adaptive_entropy=False,
        # the model's forward, replaced by the prepared log-probs and entropies (and no MoE aux loss)
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (logp, entropy, None))
    mask = torch.tensor(r.mask)
    inputs = {"prompt_ids": torch.zeros(B, P, dtype=torch.long), "prompt_mask": torch.ones(B, P, dtype=torch.long),
              "completion_ids": torch.zeros(B, C, dtype=torch.long), "completion_mask": mask,
              "advantages": torch.tensor(r.adv), "num_items_in_batch": mask.sum()}
    if stored_old:
        inputs["old_per_token_logps"] = torch.tensor(r.old)
    if beta:
        inputs["ref_per_token_logps"] = torch.tensor(r.ref)
    if is_ratio is not None:
        inputs["importance_sampling_ratio"] = is_ratio
    loss = GRPOTrainer._compute_loss(me, None, inputs)
    g_logp, g_ent = torch.autograd.grad(loss, (logp, entropy), allow_unused=True)
    g_ent = np.zeros_like(r.entropy) if g_ent is None else g_ent.numpy()
    return loss.item(), g_logp.numpy(), g_ent, {k: v[-1] for k, v in me._metrics["train"].items()}


PARITY_ROLLOUT = make_rollout(0, [7, 3, 1, 5, 6, 2])        # every row has tokens; lengths 1..7 of C = 7


def compare(tag, r: Rollout, params: GRPOParams, stored_old: bool, beta: float, theirs):
    t_loss, t_glogp, t_gent, t_metrics = theirs
    with jax.enable_x64(True):
        batch = r.batch(stored_old, beta)
        o_loss, o_glogp, o_gent, o_metrics = ours(params, batch, jnp.asarray(to_ours(r.logp)),
                                                  jnp.asarray(to_ours(r.entropy)))
    # the columns outside the completion carry no gradient at all
    outside = np.ones(T, bool)
    outside[P - 1:P - 1 + C] = False
    assert np.all(o_glogp[:, outside] == 0) and np.all(o_gent[:, outside] == 0)
    shared = sorted(set(t_metrics) & set(o_metrics))
    errs = {"loss": abs(o_loss - t_loss),
            "grad_logp": np.abs(o_glogp[:, P - 1:P - 1 + C] - t_glogp).max(),
            "grad_entropy": np.abs(o_gent[:, P - 1:P - 1 + C] - t_gent).max()}
    metric_errs = {k: abs(o_metrics[k] - t_metrics[k]) for k in shared}
    worst, worst_metric = max(errs.values()), max(metric_errs.values())
    print(f"{tag}: loss {t_loss:+.6f}, max |ours - trl| loss/grads {worst:.1e}, metrics {worst_metric:.1e} "
          f"({', '.join(shared)})")
    assert worst <= TOL, errs
    assert worst_metric <= METRIC_TOL, metric_errs
    return o_loss, t_metrics


@pytest.mark.parametrize("stored_old", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", list(LOSS_TYPES))
def test_matches_trl(loss_type, level, beta, stored_old):
    """Every TRL loss_type we cover x ratio level x KL x stored/absent old log-probs; clip types also with delta;
    the KL case also carries the entropy bonus. ε_high != ε_low; for cispo ε_high is an absolute cap on ρ, 0.9 here
    so that it binds on some rows and tokens and not on others at both levels (these sequence ratios are < 1.1)."""
    r = PARITY_ROLLOUT
    entropy_coef = 0.03 if beta else 0.0
    eps_high = 0.9 if loss_type == "cispo" else 0.28
    losses = {}
    for delta in ([None] if loss_type == "cispo" else [None, 1.25]):
        params = make_params(loss_type, level, beta, delta, entropy_coef, eps_high)
        theirs = trl_loss(r, loss_type=loss_type, level=level, beta=beta, eps_low=0.2, eps_high=eps_high,
                          delta=delta, entropy_coef=entropy_coef, stored_old=stored_old)
        tag = f"{loss_type}/{level}/beta={beta}/old={stored_old}/delta={delta}"
        losses[delta], metrics = compare(tag, r, params, stored_old, beta, theirs)
        if stored_old:
            # the data make the clip bind, so these parity checks are not vacuous
            assert metrics["cispo_clip_ratio" if loss_type == "cispo" else "clip_ratio/region_mean"] > 0
    if stored_old:
        # the stored old log-probs matter: π_old = sg(π_θ) gives another loss
        alt = trl_loss(r, loss_type=loss_type, level=level, beta=beta, eps_low=0.2, eps_high=eps_high, delta=None,
                       entropy_coef=entropy_coef, stored_old=False)[0]
        assert abs(alt - losses[None]) > 1e-3


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_kl_bias_correction_matches_trl(level):
    """KL_t·ρ_t (TRL 1.16's default use_bias_correction_kl=True) with stored old log-probs, where ρ != 1."""
    r = PARITY_ROLLOUT
    params = dataclasses.replace(make_params("dapo", level, 0.04), kl_bias_correction=True)
    theirs = trl_loss(r, loss_type="dapo", level=level, beta=0.04, eps_low=0.2, eps_high=0.28, delta=None,
                      entropy_coef=0.0, stored_old=True, bias_kl=True)
    loss, _ = compare(f"dapo/{level}/bias-corrected kl", r, params, True, 0.04, theirs)
    plain = trl_loss(r, loss_type="dapo", level=level, beta=0.04, eps_low=0.2, eps_high=0.28, delta=None,
                     entropy_coef=0.0, stored_old=True)[0]
    assert abs(plain - loss) > 1e-6          # the correction changes the loss on these data


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "cispo"])
def test_token_truncate_matches_trl_importance_sampling_ratio(loss_type):
    """Our token_truncate weight min(exp(log π_old - log q), C) is what TRL's vLLM token_truncate multiplies the
    surrogate by (before the KL is added: the KL term is not reweighted)."""
    r, cap = PARITY_ROLLOUT, 1.05
    ratio = torch.clamp(torch.exp((torch.tensor(r.old) - torch.tensor(r.q)) * torch.tensor(r.mask)), max=cap)
    eps_high = 1.1 if loss_type == "cispo" else 0.28
    params = make_params(loss_type, "token", 0.04, eps_high=eps_high, correction="token_truncate",
                         correction_cap=cap)
    theirs = trl_loss(r, loss_type=loss_type, level="token", beta=0.04, eps_low=0.2, eps_high=eps_high, delta=None,
                      entropy_coef=0.0, stored_old=True, is_ratio=ratio)
    compare(f"{loss_type}/token_truncate", r, params, True, 0.04, theirs)
    assert float((ratio < cap).float().mean()) < 0.9 and bool((ratio < 1).any())  # the cap binds, not everywhere


# --- (a) math: the KL estimators TRL lacks, dual clip -----------------------------------------------------------
@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_estimators_match_hand_formulas(estimator):
    r = PARITY_ROLLOUT
    m = r.mask.astype(float)
    d = r.logp - r.ref
    kl = {"k1": d, "k2": 0.5 * d ** 2, "k3": np.exp(-d) + d - 1}[estimator]
    dkl = {"k1": np.ones_like(d), "k2": d, "k3": 1 - np.exp(-d)}[estimator]        # d KL / d log π
    beta, n = 0.04, m.sum()
    with jax.enable_x64(True):
        logp, ent = jnp.asarray(to_ours(r.logp)), jnp.asarray(to_ours(r.entropy))
        with_kl = ours(dataclasses.replace(make_params(beta=beta), kl_estimator=estimator), r.batch(True, beta),
                       logp, ent)
        without = ours(make_params(), r.batch(True), logp, ent)
    np.testing.assert_allclose(with_kl[0] - without[0], beta * (kl * m).sum() / n, rtol=0, atol=1e-13)
    np.testing.assert_allclose((with_kl[1] - without[1])[:, P - 1:P - 1 + C], beta * dkl * m / n, rtol=0, atol=1e-13)
    np.testing.assert_allclose(with_kl[3]["kl"], (kl * m).sum() / n, rtol=0, atol=1e-13)


def test_dual_clip_caps_negative_advantage_loss():
    """Ye et al. 2020: for A < 0 the objective is max(min(ρA, clip(ρ)A), cA), so the loss is at most -cA and its
    gradient vanishes beyond the cap; A > 0 is untouched."""
    logp = jnp.array([[2.0, 0.5, 2.0, 0.0]])                   # ρ = e^2, e^0.5, e^2 against old = 0
    mask = jnp.array([[1, 1, 1, 0]])

    def run(dual_clip, adv):
        batch = {"loss_mask_BT": mask, "advantage_B": jnp.array([adv]), "old_logp_BT": jnp.zeros((1, 4)),
                 "sampler_logp_BT": jnp.zeros((1, 4))}
        params = dataclasses.replace(make_params(), dual_clip=dual_clip)
        loss, (g, _) = run_loss(logp, batch, params, jnp.zeros_like(logp))
        return float(loss.total), np.asarray(g), loss.metric_means()

    plain, g_plain, _ = run(None, -1.0)
    np.testing.assert_allclose(plain, 2 * np.exp(2.0) + np.exp(0.5), rtol=1e-6)
    capped, g_capped, metrics = run(3.0, -1.0)
    np.testing.assert_allclose(capped, 3.0 + 3.0 + np.exp(0.5), rtol=1e-6)          # e^2 = 7.4 > 3 is capped
    np.testing.assert_allclose(g_capped[0], [0.0, np.exp(0.5), 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(float(metrics["clip_ratio/dual_mean"]), 2 / 3, rtol=1e-6)
    assert run(3.0, 1.0)[0] == run(None, 1.0)[0]


# --- on-policy sanity values (LOSSES.md "GRPO") ----------------------------------------------------------------
def group_normalised(rng, groups, size):
    r = rng.standard_normal((groups, size))
    return ((r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + 1e-4)).reshape(-1)


def test_on_policy_sanity_values():
    rng = np.random.default_rng(3)
    r = dataclasses.replace(make_rollout(3, [7, 2, 5, 4, 1, 6, 3, 7]), adv=group_normalised(rng, 2, 4))
    m = r.mask.astype(float)
    with jax.enable_x64(True):
        logp, ent = jnp.asarray(to_ours(r.logp)), jnp.asarray(to_ours(r.entropy))
        on = r.batch(stored_old=False)
        dapo = ours(make_params("dapo"), on, logp, ent)
        grpo_ = ours(make_params("grpo"), on, logp, ent)
        off = ours(make_params("dapo"), r.batch(stored_old=True), logp, ent)
    lengths, n = m.sum(1), m.sum()
    np.testing.assert_allclose(dapo[0], -(r.adv * lengths).sum() / n, rtol=0, atol=1e-13)
    assert abs(dapo[0]) > 1e-2                          # dapo's on-policy loss is not 0: longer completions weigh more
    assert abs(grpo_[0]) < 1e-7                         # grpo's is -mean(A) = 0 on complete groups
    # the ratio is 1 in value, ∇ρ = ∇log π: d loss / d logp = -A m / N_tok, and -A m / (|o| B) for grpo
    np.testing.assert_allclose(dapo[1][:, P - 1:P - 1 + C], -r.adv[:, None] * m / n, rtol=0, atol=1e-13)
    np.testing.assert_allclose(grpo_[1][:, P - 1:P - 1 + C], -r.adv[:, None] * m / lengths[:, None] / len(m),
                               rtol=0, atol=1e-13)
    for res in (dapo, grpo_):
        assert all(res[3][k] == 0.0 for k in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"))
    # stored old log-probs != log π_θ: another value, and the clip binds
    assert abs(off[0] - dapo[0]) > 1e-3 and off[3]["clip_ratio/region_mean"] > 0.05


# --- (c) invariance: 4 micro-batches combine into the full batch -----------------------------------------------
@pytest.mark.parametrize("correction", ["token_truncate", "sequence_mask"])
@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_micro_batches_combine_exactly(loss_type, correction):
    # row 5 is a padding row (no completion tokens); threshold 0.15 drops some rows under sequence_mask
    r = make_rollout(4, [7, 2, 5, 4, 1, 0, 3, 7])
    params = make_params(loss_type, beta=0.04, delta=1.25, entropy_coef=0.02 if loss_type == "dapo" else 0.0,
                         correction=correction, correction_cap=1.1, correction_threshold=0.15)
    with jax.enable_x64(True):
        batch = r.batch(stored_old=True, beta=0.04)
        logp, ent = jnp.asarray(to_ours(r.logp)), jnp.asarray(to_ours(r.entropy))
        full, (g_full, _) = run_loss(logp, batch, params, ent)
        g_full = g_full / full.count
        parts, g_parts = [], []
        for i in range(4):
            rows = slice(2 * i, 2 * i + 2)
            part, (g, _) = run_loss(logp[rows], {k: v[rows] for k, v in batch.items()}, params, ent[rows])
            parts.append(part)
            g_parts.append(g)                              # d total / d logp of the micro-batch
        combined = jax.tree.map(lambda *x: jnp.stack(x), *parts).combine()
        np.testing.assert_allclose(combined.total, full.total, rtol=1e-13)
        np.testing.assert_allclose(combined.count, full.count, rtol=1e-13)
        np.testing.assert_allclose(jnp.concatenate(g_parts) / combined.count, g_full, rtol=0, atol=1e-14)
        mine, theirs = combined.metric_means(), full.metric_means()
        assert mine.keys() == theirs.keys()
        for k in mine:
            np.testing.assert_allclose(mine[k], theirs[k], rtol=1e-12, err_msg=k)
        gap = np.abs(r.old - r.q) * r.mask
        assert float(mine["agreement/logp_gap_max"]) == gap.max()
        assert float(mine["agreement/logp_gap_max"]) > float(jnp.stack([p.metrics["agreement/logp_gap_max"]
                                                                        for p in parts]).min())
        # row means skip the padding row: 7 real rows
        np.testing.assert_allclose(mine["completion_length"], r.mask.sum() / 7, rtol=1e-13)
        np.testing.assert_allclose(mine["advantage"], np.delete(r.adv, 5).mean(), rtol=1e-13)
        if correction == "sequence_mask":
            assert 0 < float(mine["agreement/masked_fraction"]) < 1


# --- rollout correction ----------------------------------------------------------------------------------------
def test_token_truncate_weight_is_capped_and_detached():
    r = dataclasses.replace(make_rollout(5, [7, 4, 6]), adv=np.ones(3))
    m, cap = r.mask.astype(float), 1.1
    w = np.minimum(np.exp(r.logp - r.q), cap)           # on policy: π_old = π_θ
    params = make_params("dapo", correction="token_truncate", correction_cap=cap)
    with jax.enable_x64(True):
        loss, g, _, metrics = ours(params, r.batch(stored_old=False), jnp.asarray(to_ours(r.logp)),
                                   jnp.asarray(to_ours(r.entropy)))
    assert (w == cap).any() and (w < cap).any()
    np.testing.assert_allclose(loss, -(w * m).sum() / m.sum(), rtol=0, atol=1e-13)
    # ρ = 1 with ∇ρ = ∇log π, and no gradient through the weight
    np.testing.assert_allclose(g[:, P - 1:P - 1 + C], -w * m / m.sum(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(metrics["agreement/masked_fraction"], ((w == cap) * m).sum() / m.sum(), rtol=1e-13)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_sequence_mask_drops_exactly_the_rows_over_threshold(loss_type):
    r = make_rollout(6, [7, 4, 6, 2, 5, 3], spread=0.3)
    gap = (np.abs(r.old - r.q) * r.mask).sum(1) / r.mask.sum(1)
    threshold = float(np.median(gap))
    keep = gap <= threshold
    assert 0 < keep.sum() < len(keep)
    masked = make_params(loss_type, beta=0.04, correction="sequence_mask", correction_threshold=threshold)
    with jax.enable_x64(True):
        batch = r.batch(True, 0.04)
        logp = jnp.asarray(to_ours(r.logp))
        ent = jnp.zeros_like(logp)
        loss = run_loss(logp, batch, masked, ent)[0]
        kept = run_loss(logp[keep], {k: v[keep] for k, v in batch.items()}, make_params(loss_type, beta=0.04),
                        ent[keep])[0]
        everything = run_loss(logp, batch, make_params(loss_type, beta=0.04), ent)[0]
        np.testing.assert_allclose(loss.total, kept.total, rtol=1e-13)
        np.testing.assert_allclose(loss.count, kept.count, rtol=1e-13)
        assert abs(float(loss.value) - float(everything.value)) > 1e-4
        np.testing.assert_allclose(loss.metric_means()["agreement/masked_fraction"], 1 - keep.mean(), rtol=1e-13)


def test_agreement_metrics_hand_case():
    old = np.log(np.array([[0.5, 0.25, 0.9, 0.3]]))
    q = np.log(np.array([[0.4, 0.5, 0.9, 0.1]]))          # last token is off the completion
    mask = np.array([[1, 1, 1, 0]])
    with jax.enable_x64(True):
        batch = {"loss_mask_BT": jnp.asarray(mask), "advantage_B": jnp.array([0.5]),
                 "old_logp_BT": jnp.asarray(old), "sampler_logp_BT": jnp.asarray(q)}
        m = ours(make_params(correction="token_truncate", correction_cap=1.2), batch, jnp.asarray(old),
                 jnp.zeros_like(batch["old_logp_BT"]))[3]
    w = np.array([0.5 / 0.4, 0.5, 1.0])
    np.testing.assert_allclose(m["agreement/logp_gap_mean"], np.abs(np.log(w)).mean(), rtol=1e-12)
    np.testing.assert_allclose(m["agreement/logp_gap_max"], np.log(2.0), rtol=1e-12)
    np.testing.assert_allclose(m["agreement/prob_gap_mean"], (0.1 + 0.25 + 0.0) / 3, rtol=1e-12)
    np.testing.assert_allclose(m["agreement/is_weight_mean"], w.mean(), rtol=1e-12)
    np.testing.assert_allclose(m["agreement/is_weight_max"], 1.25, rtol=1e-12)
    np.testing.assert_allclose(m["agreement/masked_fraction"], 1 / 3, rtol=1e-12)    # 1.25 > cap 1.2
    np.testing.assert_allclose(m["completion_length"], 3.0)
    np.testing.assert_allclose(m["advantage"], 0.5)


# --- objective on a tiny decoder -------------------------------------------------------------------------------
TEMPERATURE = 0.7


@pytest.fixture(scope="module")
def decoder_case():
    """A random tiny Llama (weights drawn in numpy: no per-shape init compiles), a batch with a right-padded row,
    and, from one jitted pass over the full logits, log softmax(logits / T)[target] at T = 0.7 and T = 1, the
    entropy at T = 0.7, and the reference fields of `grpo.reference_logps`."""
    cfg = ModelConfig.tiny("llama", vocab_size=61)
    graphdef, shapes = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)
    draw = lambda path, s: jnp.asarray((1.0 if "norm" in jax.tree_util.keystr(path) else 0.0)
                                       + 0.3 * rng.standard_normal(s.shape), s.dtype)
    state = jax.tree_util.tree_map_with_path(draw, shapes)
    B, seq = 4, 12
    tokens = rng.integers(1, 61, (B, seq)).astype(np.int32)
    mask = np.ones((B, seq), np.int32)
    mask[1, 9:] = 0                                            # a shorter row, right-padded
    loss_mask = np.zeros((B, seq), np.int32)
    loss_mask[:, 3:-1] = 1                                     # tokens 4.. are the completion
    loss_mask *= np.concatenate([mask[:, 1:], np.zeros((B, 1), np.int32)], 1)
    batch = {"tokens_BT": jnp.asarray(tokens), "mask_BT": jnp.asarray(mask), "loss_mask_BT": jnp.asarray(loss_mask),
             "advantage_B": jnp.asarray(rng.standard_normal(B), jnp.float32)}

    @jax.jit
    def direct(state, batch):
        model = nnx.merge(graphdef, state)
        logits = model(batch["tokens_BT"], batch["mask_BT"])[:, :-1]
        targets = batch["tokens_BT"][:, 1:, None]
        valid = (batch["mask_BT"][:, :-1] * batch["mask_BT"][:, 1:]).astype(bool)
        pad = lambda x: jnp.concatenate([jnp.where(valid, x, 0.0), jnp.zeros_like(x[:, :1])], 1)
        logp = {t: pad(jnp.take_along_axis(jax.nn.log_softmax(logits / t, -1), targets, -1)[..., 0])
                for t in (TEMPERATURE, 1.0)}
        p = jax.nn.softmax(logits / TEMPERATURE, -1)
        entropy = pad(-(p * jax.nn.log_softmax(logits / TEMPERATURE, -1)).sum(-1))
        ref = grpo.reference_logps(model, batch, make_params(temperature=TEMPERATURE))["ref_logp_BT"]
        return logp, entropy, ref

    return graphdef, state, batch, direct(state, batch)


def test_objective_jits_and_uses_the_temperature(decoder_case):
    graphdef, state, batch, (logp, entropy, ref) = decoder_case
    # cispo with a cap above 1: on policy the loss is -Σ A m log π / N, so its value reads the log-probs themselves
    params = make_params("cispo", eps_high=5.0, beta=0.04, entropy_coef=0.01, temperature=TEMPERATURE)
    batch = batch | {"sampler_logp_BT": logp[TEMPERATURE], "ref_logp_BT": ref}

    @jax.jit
    def run(state, batch):
        def value(state):
            loss = grpo.objective(nnx.merge(graphdef, state), batch, params)
            return loss.total / loss.count, loss
        return jax.value_and_grad(value, has_aux=True)(state)

    (value, loss), grads = run(state, batch)
    metrics = loss.metric_means()
    m = batch["loss_mask_BT"].astype(jnp.float32)
    adv = batch["advantage_B"][:, None]
    expected = (-(adv * logp[TEMPERATURE] * m).sum() - 0.01 * (entropy * m).sum()) / m.sum()
    assert np.isfinite(float(value)) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-5)
    assert float(metrics["agreement/logp_gap_max"]) < 1e-5     # the trainer's log π equals the sampler's
    assert float(metrics["kl"]) < 1e-6                          # the reference is the policy itself
    np.testing.assert_allclose(float(metrics["entropy"]), float((entropy * m).sum() / m.sum()), rtol=1e-5)
    # against log-probs at T = 1 the gap metric sees the difference
    (_, cold), _ = run(state, batch | {"sampler_logp_BT": logp[1.0]})
    assert float(cold.metric_means()["agreement/logp_gap_mean"]) > 1e-2


def test_reference_logps_use_the_temperature(decoder_case):
    _, _, batch, (logp, _, ref) = decoder_case
    np.testing.assert_allclose(ref, logp[TEMPERATURE], atol=1e-5)
    assert float(jnp.abs(ref - logp[1.0]).max()) > 0.1


def test_entropy_coef_needs_entropy():
    r = PARITY_ROLLOUT
    with pytest.raises(ValueError, match="entropy_BT"):
        grpo.grpo_loss(jnp.asarray(to_ours(r.logp)), r.batch(), make_params(entropy_coef=0.01))


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_loss_window_gives_the_same_loss_metrics_and_gradients(decoder_case, loss_type):
    """data.loss_window: the objective reads the completion columns only (common.loss_window), with every per-token
    field gathered alike; loss, metrics and gradients are those of the full [B, T] columns."""
    from caujax.data.batches import loss_positions

    graphdef, state, batch, (logp, _, ref) = decoder_case
    params = make_params(loss_type, beta=0.04, entropy_coef=0.01, temperature=TEMPERATURE)
    full = batch | {"sampler_logp_BT": logp[TEMPERATURE] + 0.01, "ref_logp_BT": ref}
    window = full | {"loss_index_BW": jnp.asarray(loss_positions(np.asarray(full["loss_mask_BT"]), 4))}
    assert window["loss_index_BW"].shape[1] < full["tokens_BT"].shape[1]

    def run(batch):
        def value(state):
            loss = grpo.objective(nnx.merge(graphdef, state), batch, params)
            return loss.total / loss.count, loss
        return jax.value_and_grad(value, has_aux=True)(state)

    (v_full, l_full), g_full = run(full)
    (v_win, l_win), g_win = run(window)
    np.testing.assert_allclose(float(v_win), float(v_full), rtol=1e-6)
    m_full, m_win = l_full.metric_means(), l_win.metric_means()
    assert m_full.keys() == m_win.keys()
    for k in m_full:
        np.testing.assert_allclose(float(m_win[k]), float(m_full[k]), rtol=1e-5, atol=1e-7, err_msg=k)
    for a, b in zip(jax.tree.leaves(g_win), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6 * float(np.abs(b).max()))
