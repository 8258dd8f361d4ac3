"""Advantages for online RL: GRPO group normalisation, RLOO baselines, and PPO's GAE and masked whitening.

Rollout rows: R = prompts x G, the G completions of prompt i adjacent (rows i*G .. i*G+G-1). Every function is pure
jax.numpy under `jax.jit`, with the integer, string and bool options static (gamma and lam are traced); inputs may be
numpy or jax arrays. Results are float32 unless the input is float64 (under `jax.enable_x64`), so parity tests can
compare at 1e-12.
"""
from __future__ import annotations

from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

RewardScale = Literal["group", "batch", "none"]


def _float(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    return x.astype(jnp.float64 if x.dtype == jnp.float64 else jnp.float32)


def _grouped(rewards_R: ArrayLike, group_size: int) -> Array:
    r_R = _float(rewards_R)
    if r_R.ndim != 1:
        raise ValueError(f"rewards must have shape [R], got {r_R.shape}")
    if group_size < 1 or r_R.shape[0] % group_size:
        raise ValueError(f"R={r_R.shape[0]} rewards do not split into groups of group_size={group_size}")
    return r_R.reshape(-1, group_size)


def _nan_mean_std(x: Array, axis: int | None, ddof: int) -> tuple[Array, Array]:
    """nanmean / nanstd (kept dims); std is NaN when fewer than ddof+1 values are not NaN, as TRL's `nanstd`."""
    valid = ~jnp.isnan(x)
    n = valid.sum(axis, keepdims=True).astype(x.dtype)
    mean = jnp.where(valid, x, 0).sum(axis, keepdims=True) / n          # 0/0 = NaN for an all-NaN group
    ss = jnp.where(valid, (x - mean) ** 2, 0).sum(axis, keepdims=True)
    std = jnp.where(n > ddof, jnp.sqrt(ss / jnp.maximum(n - ddof, 1)), jnp.nan)
    return mean, std


@partial(jax.jit, static_argnames=("group_size",))
def zero_spread(rewards_R: ArrayLike, group_size: int) -> Array:
    """bool[R // G]: True for groups whose non-NaN rewards are all equal (exact equality).

    TRL logs the fraction as `frac_reward_zero_std`, but from `isclose(std, 0)` on the std it divides by: with
    scale_rewards="batch" that is the batch std, and a group with fewer than 2 scorable rewards has std NaN there
    (not zero). Here a group with 0 or 1 scorable rewards counts as zero-spread: it carries no learning signal.
    """
    r_PG = _grouped(rewards_R, group_size)
    valid = ~jnp.isnan(r_PG)
    hi_P = jnp.where(valid, r_PG, -jnp.inf).max(1)
    lo_P = jnp.where(valid, r_PG, jnp.inf).min(1)
    return ~(hi_P > lo_P)


@partial(jax.jit, static_argnames=("group_size", "scale", "ddof", "epsilon"))
def group_advantages(rewards_R: ArrayLike, group_size: int, *, scale: RewardScale = "group", ddof: int = 1,
                     epsilon: float = 1e-4) -> Array:
    """GRPO advantages, shape [R]: A_i = (r_i - mean_g(r)) / (std + epsilon) (Shao et al. 2024, sec. 4.1.2).

    - scale="group": std over the G rewards of the group (TRL `scale_rewards="group"`, the default).
    - scale="batch": std over all R rewards, but the mean is still the group mean (TRL `scale_rewards="batch"`,
      read in trl/trainer/grpo_trainer.py of TRL 1.16: `rewards - mean_grouped_rewards` over `nanstd(rewards)`).
    - scale="none": A_i = r_i - mean_g(r), no division (Dr.GRPO, Liu et al. 2025).
    ddof=1 is Bessel's correction (TRL, verl, OpenRLHF); ddof=0 the population std (EasyDeL's `jnp.nanstd`).
    epsilon: TRL 1e-4, Tunix/verl 1e-6, OpenRLHF 1e-9.

    NaN rewards (TRL: every reward function returned None) are left out of the mean and std and get A = 0.
    Where the std is undefined (fewer than ddof+1 scorable rewards, e.g. group_size=1 with ddof=1) the advantage
    is 0, which is what TRL's nan_to_num gives. A zero-spread group (see `zero_spread`) gets A = 0 exactly; TRL
    can leave rounding residue there (mean([0.1] * 3) != 0.1 in floating point), divided by epsilon.
    """
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    r_PG = _grouped(rewards_R, group_size)
    mean_P1, std_P1 = _nan_mean_std(r_PG, 1, ddof)
    adv_PG = r_PG - mean_P1
    if scale == "group":
        adv_PG = adv_PG / (std_P1 + epsilon)
    elif scale == "batch":
        adv_PG = adv_PG / (_nan_mean_std(r_PG, None, ddof)[1] + epsilon)
    keep_PG = ~jnp.isnan(adv_PG) & ~zero_spread(rewards_R, group_size)[:, None]
    return jnp.where(keep_PG, adv_PG, 0).reshape(-1)


@partial(jax.jit, static_argnames=("group_size",))
def rloo_advantages(rewards_R: ArrayLike, group_size: int) -> Array:
    """RLOO advantages, shape [R]: A_i = r_i - mean_{j != i, j in group} r_j (Ahmadian et al. 2024).

    As TRL's RLOOTrainer: NaN rewards are left out of the baseline (divisor = scorable count - 1) and get A = 0, as
    does the only scorable reward of a group. Zero-spread groups get A = 0 exactly.
    """
    if group_size < 2:
        raise ValueError(f"RLOO needs group_size >= 2 for a leave-one-out baseline, got {group_size}")
    r_PG = _grouped(rewards_R, group_size)
    valid = ~jnp.isnan(r_PG)
    n_P1 = valid.sum(1, keepdims=True).astype(r_PG.dtype)
    total_P1 = jnp.where(valid, r_PG, 0).sum(1, keepdims=True)
    adv_PG = r_PG - (total_P1 - r_PG) / (n_P1 - 1)
    keep_PG = valid & (n_P1 > 1) & ~zero_spread(rewards_R, group_size)[:, None]
    return jnp.where(keep_PG, adv_PG, 0).reshape(-1)


@partial(jax.jit, static_argnames=("shift_mean", "ddof"))
def whiten(x: ArrayLike, mask: ArrayLike, *, shift_mean: bool = True, ddof: int = 1) -> Array:
    """Masked whitening, any shape: the `masked_whiten` of TRL's PPO trainer (no longer shipped in TRL 1.16).

    With M = {mask != 0}, n = |M|, mu = mean_M(x) and var = sum_M (x - mu)^2 / (n - ddof) (Bessel by default, as
    TRL's masked_var):  out = (x - mu) * rsqrt(var + 1e-8), plus mu again when shift_mean=False (TRL PPO's
    `whiten_rewards`). Positions outside M are 0 in the result (TRL follows the call with `masked_fill(.., 0)`).
    TRL raises when n <= 1; under jit this returns NaN on M instead (n <= ddof), for the train loop's NaN check.
    """
    x = _float(x)
    if x.shape != jnp.shape(mask):
        raise ValueError(f"x {x.shape} and mask {jnp.shape(mask)} must have the same shape")
    m = jnp.asarray(mask) != 0
    n = m.sum().astype(x.dtype)
    mu = jnp.where(m, x, 0).sum() / n
    var = jnp.where(n > ddof, jnp.where(m, (x - mu) ** 2, 0).sum() / (n - ddof), jnp.nan)
    out = (x - mu) * jax.lax.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mu
    return jnp.where(m, out, 0)


@jax.jit
def gae(rewards_BT: ArrayLike, values_BT: ArrayLike, mask_BT: ArrayLike, *, gamma: float,
        lam: float) -> tuple[Array, Array]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16), backward `lax.scan` over T.

    delta_t = r_t + gamma V_{t+1} - V_t,   A_t = delta_t + gamma lam A_{t+1},   returns_t = A_t + V_t,
    with V_{t+1} = A_{t+1} = 0 when position t+1 is masked or t = T-1: a row's mask is 1 on one contiguous span
    (the completion; prompt before it and padding after it are 0), and the episode ends with the span. Rewards and
    values where mask == 0 are ignored (they never reach the span); advantages and returns are 0 there. A hole
    inside a span would end the episode at the hole.

    TRL's PPO (trl/experimental/ppo) runs the recursion over the whole padded response instead, having zeroed values
    past the end (`padding_mask_p1`) and with zero KL rewards on padding; when rewards and values are 0 on padding
    that gives the same A and returns on the span. TRL keeps V one token past the last response token (and puts the
    score there); to reproduce that, extend the mask by one token.
    """
    r_BT, v_BT = _float(rewards_BT), _float(values_BT)
    if r_BT.ndim != 2 or r_BT.shape != v_BT.shape or r_BT.shape != jnp.shape(mask_BT):
        raise ValueError(f"rewards {r_BT.shape}, values {v_BT.shape}, mask {jnp.shape(mask_BT)}: want one [B, T]")
    dt = jnp.promote_types(r_BT.dtype, v_BT.dtype)
    m_BT = jnp.asarray(mask_BT) != 0
    r_BT = jnp.where(m_BT, r_BT, 0).astype(dt)
    v_BT = jnp.where(m_BT, v_BT, 0).astype(dt)
    gamma, lam = jnp.asarray(gamma, dt), jnp.asarray(lam, dt)

    def step(carry, xs):
        v_next_B, a_next_B = carry                    # both 0 where position t+1 is masked (or t = T-1)
        r_B, v_B, m_B = xs
        a_B = jnp.where(m_B, r_B + gamma * v_next_B - v_B + gamma * lam * a_next_B, 0)
        return (v_B, a_B), a_B                        # v_B is already 0 where masked

    zeros_B = jnp.zeros(r_BT.shape[:1], dt)
    _, a_TB = jax.lax.scan(step, (zeros_B, zeros_B), (r_BT.T, v_BT.T, m_BT.T), reverse=True)
    a_BT = a_TB.T
    return a_BT, jnp.where(m_BT, a_BT + v_BT, 0)
