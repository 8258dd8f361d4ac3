"""Losses: hand-computable values, parity with TRL 1.16's own loss code, chunked log-probs, exact accumulation."""
from __future__ import annotations

import dataclasses
import math
import types
from collections import defaultdict
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.kto_trainer import KTOTrainer
from trl.trainer.sft_trainer import SFTTrainer
from trl.trainer.utils import add_fused_lm_head

from caujax.losses import aggregate, dpo, kto, logprobs_from_logits, sft, token_logprobs
from caujax.losses.common import next_token_targets
from caujax.methods import METHODS

V, D = 37, 16          # 37 is prime: no chunk size divides it, so the remainder chunk is always exercised
PARITY_TOL = 1e-6      # float64 losses against TRL on the same log-probs
E2E_TOL = 1e-4         # float32 model -> log-probs -> loss, against TRL's fused LM head (composite)


# --- a stand-in for the decoder's protocol: hidden() + logits(h, vocab_start, vocab_size) + cfg.vocab_size --------
@dataclasses.dataclass(frozen=True)
class TinyCfg:
    vocab_size: int = V
    embed_dim: int = D


class TinyLM(nnx.Module):
    """Embedding, a causal running mean over real tokens (so context and padding matter), one dense layer."""

    def __init__(self, seed: int, head_scale: float = 1.0):
        k = jax.random.split(jax.random.key(seed), 3)
        self.cfg = TinyCfg()
        self.embed = nnx.Param(jax.random.normal(k[0], (V, D)))
        self.w = nnx.Param(jax.random.normal(k[1], (D, D)) / math.sqrt(D))
        self.head = nnx.Param(head_scale * jax.random.normal(k[2], (D, V)))

    def hidden(self, tokens_BT, mask_BT):
        m_BT1 = mask_BT.astype(jnp.float32)[..., None]
        x_BTD = self.embed[...][tokens_BT] * m_BT1
        ctx_BTD = jnp.cumsum(x_BTD, axis=1) / jnp.maximum(jnp.cumsum(m_BT1, axis=1), 1.0)
        return jnp.tanh(jnp.einsum("BTD,DE->BTE", x_BTD + ctx_BTD, self.w[...]))

    def logits(self, h_BTD, vocab_start, vocab_size):
        w_DC = jax.lax.dynamic_slice_in_dim(self.head[...], vocab_start, vocab_size, axis=1)
        return jnp.einsum("BTD,DC->BTC", h_BTD, w_DC).astype(jnp.float32)

    def __call__(self, tokens_BT, mask_BT=None):
        mask_BT = jnp.ones_like(tokens_BT) if mask_BT is None else mask_BT
        return self.logits(self.hidden(tokens_BT, mask_BT), 0, self.cfg.vocab_size)


class TorchTinyLM(torch.nn.Module):
    """The same function in torch, shaped like a transformers model so that TRL's fused LM head can patch it."""

    def __init__(self, jax_model: TinyLM):
        super().__init__()
        self.config = transformers.PretrainedConfig()
        self.is_gradient_checkpointing = False
        t = lambda x: torch.tensor(np.asarray(x[...]))
        self.embed, self.w = t(jax_model.embed), t(jax_model.w)
        self.lm_head = torch.nn.Linear(D, V, bias=False)
        self.lm_head.weight.data = t(jax_model.head).T.contiguous()

    def base_model(self, input_ids, attention_mask, **_):
        m = attention_mask.float()[..., None]
        x = self.embed[input_ids] * m
        ctx = torch.cumsum(x, 1) / torch.cumsum(m, 1).clamp(min=1.0)
        return SimpleNamespace(last_hidden_state=torch.tanh((x + ctx) @ self.w))

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, attention_mask, **_):
        return SimpleNamespace(logits=self.lm_head(self.base_model(input_ids, attention_mask).last_hidden_state))


def trl_self(**attrs):
    """The attributes TRL's loss methods read from the trainer, on one process."""
    acc = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x,
                          unwrap_model=lambda m: m, parallelism_config=None)
    base = dict(accelerator=acc, _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
                _total_train_tokens=0, _tp_size=1, aux_loss_enabled=False, model=SimpleNamespace(training=True),
                args=SimpleNamespace(gradient_checkpointing_kwargs=None, loss_type="nll",
                                     average_tokens_across_devices=False))
    return SimpleNamespace(**{**base, **attrs})


def kto_self(**attrs):
    me = trl_self(loss_type="kto", calculate_KL=True, **attrs)
    me._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, me)    # the one helper it calls on self
    return me


def fused(model: TinyLM) -> TorchTinyLM:
    m = TorchTinyLM(model)
    add_fused_lm_head(m, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    return m


def rows(prompts, completions, seq_len):
    """Right-padded prompt+completion rows: tokens, mask, token-aligned completion mask, and our loss_mask_BT."""
    tok, mask, comp = (np.zeros((len(prompts), seq_len), np.int32) for _ in range(3))
    for i, (p, c) in enumerate(zip(prompts, completions)):
        tok[i, :len(p) + len(c)] = p + c
        mask[i, :len(p) + len(c)] = 1
        comp[i, len(p):len(p) + len(c)] = 1
    loss_mask = np.concatenate([comp[:, 1:], np.zeros_like(comp[:, :1])], axis=1)
    return tok, mask, comp, loss_mask


def random_seqs(rng, n, lo, hi):
    return [list(rng.integers(1, V, size=rng.integers(lo, hi + 1))) for _ in range(n)]


@pytest.fixture(scope="module")
def models():
    return TinyLM(seed=0), TinyLM(seed=1, head_scale=2.0)


@pytest.fixture(scope="module")
def dpo_data():
    rng = np.random.default_rng(0)
    prompts = random_seqs(rng, 4, 1, 4)
    chosen, rejected = random_seqs(rng, 4, 1, 5), random_seqs(rng, 4, 1, 5)
    return rows(prompts + prompts, chosen + rejected, 10)


@pytest.fixture(scope="module")
def kto_data():
    rng = np.random.default_rng(1)
    prompts, completions = random_seqs(rng, 8, 1, 4), random_seqs(rng, 8, 1, 5)
    rotated = completions[-1:] + completions[:-1]       # TRL: row i gets the completion of row i-1
    label = np.array([1, 0, 1, 1, 0, 1, 0, 1], np.int32)
    return rows(prompts, completions, 10), rows(prompts, rotated, 10), label


def as_batch(data):
    tok, mask, _, loss_mask = data
    return {"tokens_BT": jnp.asarray(tok), "mask_BT": jnp.asarray(mask), "loss_mask_BT": jnp.asarray(loss_mask)}


def kto_batch(kto_data, ref):
    main, kl, label = kto_data
    batch = as_batch(main) | {"label_B": jnp.asarray(label)}
    batch |= {"kl_" + k: v for k, v in as_batch(kl).items()}
    return batch | kto.reference_logps(ref, batch)


# --- (a) math ---------------------------------------------------------------------------------------------------
def test_dpo_sanity_values_at_reference():
    logp_B = jnp.array([-3.0, -7.5, -1.25])
    lens_B = jnp.array([2, 5, 1])
    for loss_type, expected in [("sigmoid", math.log(2)), ("ipo", 25.0), ("hinge", 1.0)]:   # 25 = 1/(4β²)
        loss = dpo.dpo_loss(logp_B, logp_B - 1, logp_B, logp_B - 1, beta=0.1, loss_type=loss_type,
                            len_c_B=lens_B, len_r_B=lens_B)
        np.testing.assert_allclose(loss.total / loss.count, expected, rtol=1e-6)
    # dL/dΔ_c of one pair is -β σ(-βδ) = -β/2 at δ = 0
    grad_B = jax.grad(lambda lc: dpo.dpo_loss(lc, logp_B, logp_B, logp_B, beta=0.1).total)(logp_B)
    np.testing.assert_allclose(grad_B, -0.05, rtol=1e-6)


def test_kto_half_at_reference_and_clamped_z0():
    logp_B = jnp.array([-2.0, -4.0, -1.0, -3.0])
    loss = kto.kto_loss(logp_B, logp_B, jnp.array([1, 0, 1, 0]), jnp.float32(0.0), beta=0.1)
    np.testing.assert_allclose(loss.total / loss.count, 0.5, rtol=1e-6)
    assert float(kto.reference_point(*kto.kl_stats(logp_B - 1.0, logp_B))) == 0.0      # mean KL -1 -> clamped
    np.testing.assert_allclose(kto.reference_point(*kto.kl_stats(logp_B + 0.5, logp_B)), 0.5, rtol=1e-6)


def test_aggregate_hand_values():
    per_tok = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = jnp.array([[1, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(aggregate(per_tok, mask, "token_mean"), (7.0, 3.0))
    np.testing.assert_allclose(aggregate(per_tok, mask, "seq_mean_token_mean"), (1.5 + 4.0, 2.0))
    np.testing.assert_allclose(aggregate(per_tok, mask, "seq_sum_const", const=4.0), (7.0 / 4.0, 2.0))
    with pytest.raises(ValueError, match="const"):
        aggregate(per_tok, mask, "seq_sum_const")


def test_params_are_validated():
    with pytest.raises(ValueError, match="beta"):
        dpo.DPOParams(beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo.DPOParams(loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="loss_type"):
        dpo.DPOParams(loss_type="robust")
    with pytest.raises(ValueError, match="undesirable_weight"):
        kto.KTOParams(undesirable_weight=-1.0)
    with pytest.raises(ValueError, match="loss_type"):
        sft.SFTParams(loss_type="mean")


# --- (b) parity with TRL's own loss code on the same float64 log-probs -----------------------------------------
def random_token_logps(rng, comp):
    """Per-token log-probs as TRL's fused head returns them: aligned with comp[:, 1:], zero off the completion."""
    shift = comp[:, 1:]
    return torch.tensor(-rng.exponential(2.0, shift.shape) * shift, dtype=torch.float64), shift


@pytest.mark.parametrize("loss_type,beta", [("sigmoid", 0.1), ("sigmoid", 0.5), ("ipo", 0.1), ("ipo", 0.5),
                                            ("hinge", 0.1), ("hinge", 0.5)])
def test_dpo_matches_trl(dpo_data, loss_type, beta):
    rng = np.random.default_rng(2)
    tok, mask, comp, _ = dpo_data
    logps, shift = random_token_logps(rng, comp)
    ref_B2 = torch.tensor(-rng.exponential(8.0, tok.shape[0]), dtype=torch.float64)
    zeros = torch.zeros_like(logps)
    out = SimpleNamespace(log_probs=logps, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool(), aux_loss=None)
    me = trl_self(beta=beta, loss_types=[loss_type], loss_weights=[1.0], label_smoothing=0.0, ld_alpha=None,
                  f_divergence_type="reverse_kl", use_weighting=False, precompute_ref_logps=True)
    inputs = {"input_ids": torch.tensor(tok, dtype=torch.long), "attention_mask": torch.tensor(mask),
              "completion_mask": torch.tensor(comp), "ref_chosen_logps": ref_B2[:4], "ref_rejected_logps": ref_B2[4:]}
    trl_loss = DPOTrainer._compute_loss(me, lambda **_: out, inputs, False).item()
    with jax.enable_x64(True):
        logp_B2 = jnp.asarray(logps.numpy()).sum(-1)
        lens_B2 = jnp.asarray(shift.sum(-1))
        ref = jnp.asarray(ref_B2.numpy())
        loss = dpo.dpo_loss(logp_B2[:4], logp_B2[4:], ref[:4], ref[4:], beta=beta, loss_type=loss_type,
                            len_c_B=lens_B2[:4], len_r_B=lens_B2[4:])
        ours = {k: float(v / loss.count) for k, v in loss.metrics.items()} | {"loss": float(loss.total / loss.count)}
    theirs = {k: me._metrics["train"][k][-1] for k in ours if k != "loss"} | {"loss": trl_loss}
    print(f"dpo {loss_type} beta={beta}: max |ours - trl| = {max(abs(ours[k] - theirs[k]) for k in ours):.2e}")
    for k in ours:
        assert abs(ours[k] - theirs[k]) <= PARITY_TOL, (k, ours[k], theirs[k])


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_cdpo_matches_formula(eps):
    """TRL 1.x sigmoid has no smoothing: eps > 0 is checked against the LOSSES.md cDPO formula written in torch."""
    rng = np.random.default_rng(3)
    lc, lr, rc, rr = (rng.normal(-10.0, 3.0, 16) for _ in range(4))
    delta = torch.tensor((lc - rc) - (lr - rr), dtype=torch.float64)
    logsig = torch.nn.functional.logsigmoid
    expected = (-(1 - eps) * logsig(0.1 * delta) - eps * logsig(-0.1 * delta)).mean().item()
    with jax.enable_x64(True):
        loss = dpo.dpo_loss(*map(jnp.asarray, (lc, lr, rc, rr)), beta=0.1, label_smoothing=eps)
        got = float(loss.total / loss.count)
    print(f"cdpo eps={eps}: |ours - formula| = {abs(got - expected):.2e}")
    assert abs(got - expected) <= PARITY_TOL


@pytest.mark.parametrize("beta,w_d,w_u,kl_shift", [(0.1, 1.0, 1.0, 0.0), (0.5, 1.33, 0.7, 0.0),
                                                   (0.1, 1.0, 1.0, 30.0), (0.3, 0.8, 1.2, -3.0)])
def test_kto_matches_trl(kto_data, beta, w_d, w_u, kl_shift):
    rng = np.random.default_rng(4)
    (tok, mask, comp, _), (kl_tok, kl_mask, kl_comp, _), label = kto_data
    logps, _ = random_token_logps(rng, comp)
    kl_logps, _ = random_token_logps(rng, kl_comp)
    ref = torch.tensor(-rng.exponential(8.0, 8), dtype=torch.float64)
    ref_kl = torch.tensor(-rng.exponential(8.0, 8) + kl_shift, dtype=torch.float64)   # +30: z0 clamps to 0
    kl_ids = torch.tensor(kl_tok, dtype=torch.long)

    def fake_model(input_ids, **_):
        lp = kl_logps if torch.equal(input_ids, kl_ids) else logps
        zeros = torch.zeros_like(lp)
        return SimpleNamespace(log_probs=lp, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool(), aux_loss=None)

    me = kto_self(beta=beta, desirable_weight=w_d, undesirable_weight=w_u, precompute_ref_logps=True)
    inputs = {"input_ids": torch.tensor(tok, dtype=torch.long), "attention_mask": torch.tensor(mask),
              "completion_mask": torch.tensor(comp), "KL_input_ids": kl_ids, "KL_attention_mask": torch.tensor(kl_mask),
              "KL_completion_mask": torch.tensor(kl_comp), "label": torch.tensor(label.astype(bool)),
              "ref_logps": ref, "ref_KL_logps": ref_kl}
    trl_loss = KTOTrainer._compute_loss(me, fake_model, inputs, False).item()
    with jax.enable_x64(True):
        z0 = kto.reference_point(*kto.kl_stats(jnp.asarray(kl_logps.numpy()).sum(-1), jnp.asarray(ref_kl.numpy())))
        loss = kto.kto_loss(jnp.asarray(logps.numpy()).sum(-1), jnp.asarray(ref.numpy()), jnp.asarray(label), z0,
                            beta=beta, desirable_weight=w_d, undesirable_weight=w_u)
        m = {k: float(v) for k, v in loss.metrics.items()}
        ours = {"loss": float(loss.total / loss.count), "kl": m["kl"] / float(loss.count)}
        ours |= {f"{k}/chosen": m[f"{k}/chosen"] / m["n_desirable"] for k in ("rewards", "logps")}
        ours |= {f"{k}/rejected": m[f"{k}/rejected"] / m["n_undesirable"] for k in ("rewards", "logps")}
    theirs = {k: me._metrics["train"][k][-1] for k in ours if k != "loss"} | {"loss": trl_loss}
    assert (ours["kl"] == 0.0) == (kl_shift > 10), ours["kl"]       # the clamp case really clamps
    print(f"kto beta={beta} w=({w_d},{w_u}) z0={ours['kl']:.3f}: "
          f"max |ours - trl| = {max(abs(ours[k] - theirs[k]) for k in ours):.2e}")
    for k in ours:
        assert abs(ours[k] - theirs[k]) <= PARITY_TOL, (k, ours[k], theirs[k])


# --- token log-probs: chunked vocabulary, temperature, padding -------------------------------------------------
def padded_tokens():
    rng = np.random.default_rng(5)
    tok = rng.integers(0, V, size=(3, 9)).astype(np.int32)
    mask = np.ones_like(tok)
    mask[0, 6:] = 0          # right padding
    mask[1, :3] = 0          # left padding
    return jnp.asarray(tok), jnp.asarray(mask)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_chunked_equals_direct(models, temperature):
    model, _ = models
    tok, mask = padded_tokens()
    targets, valid = next_token_targets(tok, mask)
    direct = jnp.where(valid, logprobs_from_logits(model(tok, mask), targets, temperature), 0.0)
    by_hand = jax.nn.log_softmax(model(tok, mask) / temperature, -1)       # the temperature really divides
    np.testing.assert_allclose(direct[2, :-1], jnp.take_along_axis(by_hand[2, :-1], tok[2, 1:, None], -1)[:, 0],
                               atol=1e-5)
    for chunk in (5, 8, 36, V, 64):                                      # remainders 2, 5, 1, none, single chunk
        got = token_logprobs(model, tok, mask, temperature=temperature, vocab_chunk=chunk)
        np.testing.assert_allclose(got, direct, atol=1e-5, err_msg=f"vocab_chunk={chunk}")
    cooled = token_logprobs(model, tok, mask, temperature=0.7)
    assert float(jnp.abs(cooled - token_logprobs(model, tok, mask)).max()) > 0.1


def test_token_logprobs_masks_padding(models):
    model, _ = models
    tok, mask = padded_tokens()
    logp = token_logprobs(model, tok, mask, vocab_chunk=8)
    assert bool(jnp.all(logp[:, -1] == 0))                               # no target after the last token
    assert bool(jnp.all(logp[0, 5:] == 0)) and bool(jnp.all(logp[0, :5] < 0))   # target is padding
    assert bool(jnp.all(logp[1, :3] == 0)) and bool(jnp.all(logp[1, 3:-1] < 0))  # context is padding
    # what sits under the padding changes nothing
    noisy = jnp.where(mask == 1, tok, (tok + 11) % V)
    np.testing.assert_allclose(token_logprobs(model, noisy, mask, vocab_chunk=8), logp, atol=1e-6)


def test_token_logprobs_gradient_and_jit_match_unchunked(models):
    model, _ = models
    tok, mask = padded_tokens()
    graphdef, state = nnx.split(model)

    def total(state, chunk):
        return token_logprobs(nnx.merge(graphdef, state), tok, mask, vocab_chunk=chunk).sum()

    g_chunked = jax.jit(jax.grad(total), static_argnums=1)(state, 8)
    g_full = jax.grad(total)(state, V)
    for a, b in zip(jax.tree.leaves(g_chunked), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(a, b, atol=1e-5)


# --- end to end: our model -> log-probs -> loss, against TRL's fused LM head and loss on the same weights ----------
def test_sft_matches_trl_end_to_end(models, dpo_data):
    model, _ = models
    tok, mask, comp, _ = dpo_data
    batch = as_batch(dpo_data)
    for loss_type in ("nll", "dft"):
        loss = sft.objective(model, batch, sft.SFTParams(loss_type=loss_type))
        me = trl_self(compute_loss_func=None, label_smoother=None)
        me.args.loss_type = loss_type
        labels = torch.tensor(np.where(comp == 1, tok, -100), dtype=torch.long)
        inputs = {"input_ids": torch.tensor(tok, dtype=torch.long), "attention_mask": torch.tensor(mask),
                  "labels": labels}
        trl_loss = SFTTrainer.compute_loss(me, fused(model), inputs).item()
        print(f"sft {loss_type} end to end: |ours - trl| = {abs(float(loss.value) - trl_loss):.2e}")
        assert abs(float(loss.value) - trl_loss) <= E2E_TOL
    assert float(loss.count) == comp[:, 1:].sum()


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_dpo_matches_trl_end_to_end(models, dpo_data, loss_type):
    policy, ref = models
    tok, mask, comp, _ = dpo_data
    params = dpo.DPOParams(beta=0.1, loss_type=loss_type)
    batch = as_batch(dpo_data)
    loss = METHODS["dpo"].objective(policy, batch | dpo.reference_logps(ref, batch), params)
    me = trl_self(beta=0.1, loss_types=[loss_type], loss_weights=[1.0], label_smoothing=0.0, ld_alpha=None,
                  f_divergence_type="reverse_kl", use_weighting=False, precompute_ref_logps=False, ref_model=fused(ref))
    me.model = fused(policy)
    inputs = {"input_ids": torch.tensor(tok, dtype=torch.long), "attention_mask": torch.tensor(mask),
              "completion_mask": torch.tensor(comp)}
    trl_loss = DPOTrainer._compute_loss(me, me.model, inputs, False).item()
    print(f"dpo {loss_type} end to end: loss {trl_loss:.5f}, |ours - trl| = {abs(float(loss.value) - trl_loss):.2e}")
    assert abs(float(loss.value) - trl_loss) <= E2E_TOL
    np.testing.assert_allclose(float(loss.metrics["rewards/margins"] / loss.count),
                               me._metrics["train"]["rewards/margins"][-1], atol=E2E_TOL)


def test_kto_matches_trl_end_to_end(models, kto_data):
    policy, ref = models
    (tok, mask, comp, _), (kl_tok, kl_mask, kl_comp, _), label = kto_data
    params = kto.KTOParams(beta=0.1, desirable_weight=1.0, undesirable_weight=1.2)
    batch = kto_batch(kto_data, ref)
    loss = METHODS["kto"].objective(policy, batch, params)
    me = kto_self(beta=0.1, desirable_weight=1.0, undesirable_weight=1.2, precompute_ref_logps=False,
                  ref_model=fused(ref))
    me.model = fused(policy)
    inputs = {"input_ids": torch.tensor(tok, dtype=torch.long), "attention_mask": torch.tensor(mask),
              "completion_mask": torch.tensor(comp), "KL_input_ids": torch.tensor(kl_tok, dtype=torch.long),
              "KL_attention_mask": torch.tensor(kl_mask), "KL_completion_mask": torch.tensor(kl_comp),
              "label": torch.tensor(label.astype(bool))}
    trl_loss = KTOTrainer._compute_loss(me, me.model, inputs, False).item()
    z0 = float(loss.metrics["kl"] / loss.count)
    print(f"kto end to end: z0 {z0:.4f}, loss {trl_loss:.5f}, |ours - trl| = {abs(float(loss.value) - trl_loss):.2e}")
    assert z0 > 0                                   # the reference point is active, not clamped away
    assert abs(float(loss.value) - trl_loss) <= E2E_TOL
    assert abs(z0 - me._metrics["train"]["kl"][-1]) <= E2E_TOL


# --- accumulation: summing (total, count, metrics) over 4 micro-batches equals the full batch -----------------------
def assert_accumulates(parts, full):
    summed = jax.tree.map(lambda *xs: sum(xs), *parts)
    for a, b in zip(jax.tree.leaves(summed), jax.tree.leaves(full)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_aggregate_accumulates():
    rng = np.random.default_rng(6)
    per_tok = jnp.asarray(rng.normal(size=(8, 7)), jnp.float32)
    mask = jnp.asarray(rng.random((8, 7)) < 0.6).at[3].set(False)        # one sequence with no tokens at all
    for mode in ("token_mean", "seq_mean_token_mean", "seq_sum_const"):
        parts = [aggregate(per_tok[i:i + 2], mask[i:i + 2], mode, const=7.0) for i in range(0, 8, 2)]
        assert_accumulates(parts, aggregate(per_tok, mask, mode, const=7.0))


def test_objectives_accumulate(models, dpo_data, kto_data):
    policy, ref = models
    sft_batch = as_batch(dpo_data)
    assert_accumulates([sft.objective(policy, jax.tree.map(lambda x: x[i:i + 2], sft_batch), sft.SFTParams())
                        for i in range(0, 8, 2)], sft.objective(policy, sft_batch, sft.SFTParams()))

    dpo_batch = sft_batch | dpo.reference_logps(ref, sft_batch)
    pair = lambda i: {k: (v[i:i + 1] if k.endswith("_B") else jnp.concatenate([v[i:i + 1], v[4 + i:5 + i]]))
                      for k, v in dpo_batch.items()}
    params = dpo.DPOParams(loss_type="ipo")
    assert_accumulates([dpo.objective(policy, pair(i), params) for i in range(4)],
                       dpo.objective(policy, dpo_batch, params))

    # KTO: z0 from KL sums over all micro-batches (what step.py does), handed to each micro-batch
    kto_full = kto_batch(kto_data, ref)
    micro = [jax.tree.map(lambda x: x[i:i + 2], kto_full) for i in range(0, 8, 2)]
    kl_sum, kl_count = jax.tree.map(lambda *xs: sum(xs), *[kto.policy_kl_stats(policy, mb) for mb in micro])
    z0 = kto.reference_point(kl_sum, kl_count)
    params = kto.KTOParams(desirable_weight=1.3)
    assert_accumulates([kto.objective(policy, mb | {"kto_z0": z0}, params) for mb in micro],
                       kto.objective(policy, kto_full, params))
