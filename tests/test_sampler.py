"""The KV-cache sampler: cached greedy == full-forward greedy == transformers generate; its log-probs are the ones
training recomputes; sampling frequencies follow the filtered distribution."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from caujax.losses.common import token_logprobs
from caujax.models import Decoder, ModelConfig, load_pretrained
from caujax.sampling import SamplingParams, sample_ids
from caujax.sampling.methods import filter_logits, next_tokens
from model_fixtures import ABS_TOL, FAMILIES, REL_TOL, make_hf_checkpoint

# Prompts of different lengths (left padding inside the sampler), the longest beyond Gemma's window of 4.
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [3, 4], [9, 1, 2, 9, 1, 2, 9, 1, 2, 9, 1, 2, 9]]
NEW = 10
# The transformers comparison decodes further, to position 40: past every Llama 3.1 band of the fixture.
NEW_GREEDY = 28


@pytest.fixture(scope="module", params=FAMILIES)
def hf_pair(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    torch_model = make_hf_checkpoint(request.param, path, seed=3)
    model, _ = load_pretrained(path)
    return torch_model, model


def _greedy_full_forward(model, prompt, steps):
    """Greedy decoding by full forward passes, no cache: one fixed right-padded shape, so one compilation."""
    width = max(map(len, PROMPTS)) + NEW_GREEDY
    forward = jax.jit(lambda m, t, k: m(t, k)[0])
    seq = list(prompt)
    for _ in range(steps):
        tokens = jnp.asarray([seq + [0] * (width - len(seq))])
        mask = jnp.asarray([[1] * len(seq) + [0] * (width - len(seq))])
        seq.append(int(jnp.argmax(forward(model, tokens, mask)[len(seq) - 1])))
    return seq[len(prompt):]


def test_cached_greedy_equals_full_forward_and_transformers(hf_pair):
    """On model_fixtures' peaked checkpoints, to position 40: the same greedy tokens as transformers and as full
    forwards, and the KV-cache sampler's log-prob of each token within the parity tolerance of transformers' (the
    tied-embedding qwen2 and gemma3 fixtures soon repeat one token, where a wrong logit rarely flips the argmax).
    Catches, for every family it concerns: RoPE base x2, Llama 3.1 medium band unsmoothed, a hard-coded norm eps,
    the eps read from the family default instead of rms_norm_eps, q/k RMSNorm after RoPE."""
    import torch

    torch_model, model = hf_pair
    family = model.cfg.family
    tokens, logp, *_ = sample_ids(model, PROMPTS, SamplingParams(temperature=0, max_new_tokens=NEW_GREEDY))
    for i, prompt in enumerate(PROMPTS):
        with torch.no_grad():
            hf = torch_model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                      do_sample=False, max_new_tokens=NEW_GREEDY, min_new_tokens=NEW_GREEDY,
                                      pad_token_id=0, eos_token_id=None, output_logits=True,
                                      return_dict_in_generate=True)
        assert tokens[i].tolist() == hf.sequences[0, len(prompt):].tolist(), f"prompt {i} vs transformers"
        hf_logits = torch.cat(hf.logits).float()                                   # [NEW_GREEDY, V]
        hf_logp = torch.log_softmax(hf_logits, -1).gather(1, hf.sequences[0, len(prompt):, None])[:, 0].numpy()
        diff, scale = float(np.abs(logp[i] - hf_logp).max()), float(hf_logits.abs().max())
        print(f"{family} prompt {i}: max |log p caujax - transformers| = {diff:.2e} (max |logit| {scale:.2f})")
        # log_softmax moves by at most twice the largest logit error
        assert diff <= 2 * REL_TOL[family] * scale and diff <= ABS_TOL, f"prompt {i}: log-probs differ by {diff:.2e}"
        assert tokens[i].tolist() == _greedy_full_forward(model, prompt, NEW_GREEDY), f"prompt {i}"


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_token_logprobs(temperature):
    """The sampler's log q is that of the distribution it drew from (softmax(logits / T) renormalised over the
    top-k/top-p support); the trainer's token_logprobs with the sampler's floor gives the same number, and without
    it the full-vocabulary log-prob, lower wherever the filter removed mass."""
    model = Decoder(ModelConfig.tiny("gemma3"), rngs=nnx.Rngs(7))
    params = SamplingParams(n=2, temperature=temperature, top_p=0.9, top_k=20, max_new_tokens=NEW, seed=1)
    tokens, logp, _, _, floor, _ = sample_ids(model, PROMPTS, params)
    assert np.isfinite(floor).all()
    removed = 0.0
    for row in range(len(PROMPTS) * params.n):
        prompt = PROMPTS[row // params.n]
        seq = jnp.asarray([prompt + tokens[row].tolist()])
        cols = slice(len(prompt) - 1, len(prompt) - 1 + NEW)
        floor_BT = jnp.full(seq.shape, -jnp.inf).at[0, cols].set(floor[row])
        same_support = token_logprobs(model, seq, jnp.ones_like(seq), temperature=temperature, floor_BT=floor_BT)[0]
        np.testing.assert_allclose(logp[row], same_support[cols], atol=1e-5)
        full = token_logprobs(model, seq, jnp.ones_like(seq), temperature=temperature)[0][cols]
        assert np.all(np.asarray(full) <= logp[row] + 1e-5)
        removed = max(removed, float(np.max(logp[row] - full)))
    assert removed > 1e-2


def test_same_seed_same_samples_and_n_samples_differ():
    model = Decoder(ModelConfig.tiny("qwen2"), rngs=nnx.Rngs(0))
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=5)
    a, *_ = sample_ids(model, PROMPTS[:2], params)
    b, *_ = sample_ids(model, PROMPTS[:2], params)
    np.testing.assert_array_equal(a, b)
    assert len({tuple(r) for r in a[:3].tolist()}) > 1     # the n samples of a prompt are not copies


def test_eos_stops_a_row_and_pads_after():
    model = Decoder(ModelConfig.tiny("qwen2"), rngs=nnx.Rngs(0))
    greedy = SamplingParams(temperature=0, max_new_tokens=6)
    tokens, *_ = sample_ids(model, PROMPTS[:1], greedy)
    eos = int(tokens[0, 2])                                  # make the third greedy token the EOS
    first = tokens[0].tolist().index(eos)
    stopped, logp, lengths, done, *_ = sample_ids(model, PROMPTS[:1], greedy, eos_ids=(eos,))
    assert done[0] and lengths[0] == first + 1 and stopped[0, : first + 1].tolist() == tokens[0, : first + 1].tolist()
    assert (stopped[0, first + 1:] == 0).all() and (logp[0, first + 1:] == 0).all()


def test_bucket_rows_pad_to_a_power_of_two_up_to_8_then_to_multiples_of_8_and_of_the_shards():
    from caujax.sampling.sampler import bucket_rows

    assert [bucket_rows(x) for x in (1, 2, 3, 4, 5, 8, 9, 100, 128)] == [1, 2, 4, 4, 8, 8, 16, 104, 128]
    assert (bucket_rows(3, 8), bucket_rows(100, 16), bucket_rows(5, 6)) == (8, 112, 12)


def test_bucket_filler_rows_never_hold_the_loop_open():
    """Three prompts run as four rows (sampler.bucket_rows); when every real row has ended, decoding stops, whatever
    the filler row (the pad id alone) would still be decoding. It used to run every padded batch to max_new_tokens
    (the demo's GRPO rollouts of 4 prompts ran as 8)."""
    model = Decoder(ModelConfig.tiny("qwen2"), rngs=nnx.Rngs(0))
    greedy = SamplingParams(temperature=0, max_new_tokens=6)
    first = {int(row[0]) for row in sample_ids(model, PROMPTS, greedy).tokens}
    filler = sample_ids(model, [[0]], greedy)
    assert int(filler.tokens[0, 0]) not in first and filler.steps == 6     # the filler row alone would go on
    out = sample_ids(model, PROMPTS, greedy, eos_ids=tuple(first))          # every real row ends at its first token
    assert out.tokens.shape[0] == 3 and out.done.all() and (out.lengths == 1).all()
    assert out.steps == 1


def _chi_square_ok(counts, probs, n):
    """Pearson chi-square at p = 0.001 (dof = support - 1), with the Wilson-Hilferty critical value."""
    keep = probs > 0
    assert counts[~keep].sum() == 0, "sampled a token outside the filtered support"
    expected = probs[keep] * n
    stat = float(((counts[keep] - expected) ** 2 / expected).sum())
    dof = keep.sum() - 1
    z = 3.09                                                 # one-sided 0.001 quantile of N(0, 1)
    critical = dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3
    return stat < critical, stat, critical


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.5, 0, 1.0), (1.0, 4, 1.0), (1.0, 0, 0.8)])
def test_sampling_frequencies_match_target_distribution(temperature, top_k, top_p):
    logits_V = jnp.log(jnp.asarray([0.3, 0.2, 0.15, 0.11, 0.09, 0.08, 0.05, 0.02]))
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    n = 20_000
    draw = jax.jit(lambda key: next_tokens(jnp.broadcast_to(logits_V, (n, 8)), key, params)[0])
    counts = np.bincount(np.asarray(draw(jax.random.key(0))), minlength=8)
    target = np.asarray(jax.nn.softmax(filter_logits((logits_V / temperature)[None], top_k=top_k, top_p=top_p)[0]))
    if top_k:
        assert (target > 0).sum() == top_k
    if top_p < 1:
        assert (target > 0).sum() == 5                      # mass before the 5th is 0.76 < 0.8, before the 6th 0.85
    ok, stat, critical = _chi_square_ok(counts, target, n)
    assert ok, f"chi-square {stat:.1f} >= {critical:.1f}"


def test_mesh_sampling_equals_one_device_and_seed_does_not_recompile():
    from caujax.sampling.sampler import compilations
    from caujax.sharding import make_mesh

    # Blockwise in blocks of 8 against 16 + 10 cache columns: decoded tokens attend over the filled columns only
    # (models/decode_attention.py), with rows and cache split over the batch axes and heads over "tensor".
    model = Decoder(ModelConfig.tiny("gemma3", attention="blockwise", attention_block=8), rngs=nnx.Rngs(2))
    greedy = SamplingParams(n=2, temperature=0, max_new_tokens=NEW)
    one, logp_one, *_ = sample_ids(model, PROMPTS, greedy)
    many, logp_many, *_ = sample_ids(model, PROMPTS, greedy, mesh=make_mesh(2, 2, 2))
    np.testing.assert_array_equal(one, many)
    np.testing.assert_allclose(logp_one, logp_many, atol=1e-5)
    before = compilations()
    for seed in (11, 12, 13):
        sample_ids(model, PROMPTS, SamplingParams(n=2, temperature=0.6, top_p=0.95, max_new_tokens=NEW, seed=seed))
    assert compilations() == before + 1          # one program for the bucket, whatever the seed


def test_cache_that_cannot_fit_is_refused_up_front():
    from caujax.sampling.sampler import check_cache_fits

    cfg = ModelConfig.tiny("qwen2", num_layers=48, num_heads=8, num_kv_heads=8, head_dim=128)
    with pytest.raises(MemoryError, match=r"KV cache needs .* GiB per device .*lower the batch size"):
        check_cache_fits(cfg, rows=4096, cache_len=131_072)


def test_stop_sequence_ends_a_row_on_device():
    model = Decoder(ModelConfig.tiny("gemma3"), rngs=nnx.Rngs(7))
    params = SamplingParams(temperature=0, max_new_tokens=NEW)
    tokens, *_ = sample_ids(model, PROMPTS[:1], params)
    stop = tuple(tokens[0, 3:5].tolist())                    # the 4th and 5th greedy tokens
    first = next(i for i in range(1, NEW) if tuple(tokens[0, i - 1: i + 1].tolist()) == stop)
    stopped, _, lengths, done, *_ = sample_ids(model, PROMPTS[:1], params, stop_ids=(stop,))
    assert done[0] and lengths[0] == first + 1 and (stopped[0, first + 1:] == 0).all()


def test_bf16_compute_samples_like_weights_stored_in_bf16():
    """With float32 master weights and bf16 compute, the sampler casts the weight matrices once before its loop
    (not per step): the draws equal those of a model whose matrices are stored in bf16 and norms in float32."""
    from model_fixtures import TINY, strong_weights

    from caujax.models.layout import is_matrix

    cfg = TINY["qwen2"].replace(compute_dtype="bfloat16")
    state = strong_weights(cfg)
    stored = jax.tree_util.tree_map_with_path(lambda p, x: x.astype(jnp.bfloat16) if is_matrix(p) else x, state)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    params = SamplingParams(temperature=0.8, top_k=20, max_new_tokens=6, n=2, seed=3)
    a = sample_ids(nnx.merge(graphdef, state), [[5, 9, 2, 7], [3, 1]], params)
    b = sample_ids(nnx.merge(graphdef, stored), [[5, 9, 2, 7], [3, 1]], params)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.logp, b.logp, atol=1e-6)
