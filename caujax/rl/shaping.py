"""PPO's per-token rewards and advantages for a rollout batch (LOSSES.md "PPO"; TRL experimental PPO v1.9, Huang et
al. 2024): a KL penalty on every completion token, the sequence's score on its last token, then GAE and whitening.
"""
from __future__ import annotations

import numpy as np

from caujax.losses.common import kl_estimate
from caujax.losses.params import PPOParams
from caujax.rl import advantages as adv


def token_rewards(loss_mask: np.ndarray, score: np.ndarray, kl: np.ndarray | None, kl_coef: float) -> np.ndarray:
    """r_t = -kl_coef · KL_t on completion positions, plus the score on each row's last completion position (the
    action that ended it). Rows without completion tokens get nothing. [R, T] float32."""
    m = loss_mask.astype(np.float64)
    r = -kl_coef * kl * m if kl is not None else np.zeros_like(m)
    last = m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1)           # last column with mask 1
    has = m.any(axis=1)
    r[np.flatnonzero(has), last[has]] += score[has]
    return r.astype(np.float32)


def ppo_fields(batch: dict, scored: dict, ref: dict | None, reward: np.ndarray, done: np.ndarray,
               params: PPOParams) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """(fields, stats): old_logp_BT, old_value_BT, advantage_BT (whitened GAE) and return_BT from the trainer-side
    passes `scored` (old_logp_BT, old_value_BT) and `ref` (ref_logp_BT, None when kl_coef = 0); stats "kl" (token
    mean of KL_t, the penalty's estimator) and "kl_penalty" (mean per-sequence -kl_coef·Σ_t KL_t). A completion
    that never ended loses missing_eos_penalty from its score (TRL)."""
    m = batch["loss_mask_BT"]
    score = reward.astype(np.float64)
    if params.missing_eos_penalty is not None:
        score = score - params.missing_eos_penalty * (~done)
    # KL_t of π_old from π_ref on the sampled tokens (TRL PPOConfig.kl_estimator: k1 or k3).
    kl = None if ref is None else np.asarray(kl_estimate(scored["old_logp_BT"], ref["ref_logp_BT"],
                                                         params.kl_estimator))
    r = token_rewards(m, score, kl, params.kl_coef)
    if params.whiten_rewards:
        r = np.asarray(adv.whiten(r, m, shift_mean=False), np.float32)
    values = scored["old_value_BT"] * m
    a, ret = adv.gae(r, values, m, gamma=params.gamma, lam=params.lam)
    a = adv.whiten(a, m)
    fields = {"old_logp_BT": scored["old_logp_BT"], "old_value_BT": values.astype(np.float32),
              "advantage_BT": np.asarray(a, np.float32), "return_BT": np.asarray(ret, np.float32)}
    stats = {}
    if kl is not None and m.any():
        rows = m.any(axis=1)
        stats = {"kl": float((kl * m).sum() / m.sum()),
                 "kl_penalty": float(-params.kl_coef * (kl * m).sum(axis=1)[rows].mean())}
    return fields, stats
