"""Tiny Hugging Face checkpoints of each family with weights that make parity tests able to fail, shared by the
model, golden and sampler tests.

Small random weights hide position bugs (DESIGN.md "Known traps"): with norm scales near 0 attention is uniform and
RoPE, its scaling band and the norm eps move logits by less than 1e-4. These weights have norm scales near 1, q/k
projections (or q/k-norm scales) large enough that attention is peaked (mean attention entropy well below uniform;
`attention_entropy` measures it), a norm eps far from the 1e-5/1e-6 defaults, and sequences long enough for every
Llama 3.1 rope band and for Gemma's sliding window.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np

from caujax.models import ModelConfig, RopeScaling
from caujax.models.hf import config_to_hf
from caujax.models.tensors import hf_shape, tensor_table

FAMILIES = ("llama", "qwen2", "qwen3", "gemma3")

# Each family exercises its own flags, and each has its own norm eps, far from the 1e-5/1e-6 defaults, so a
# hard-coded or wrongly read eps moves the logits by ~1%.
# llama: head_dim 16 gives 8 RoPE frequencies, wavelengths 2π·10^(k/4) = 6.3, 11, 20, 35, 63, 112, 199, 353; Llama
# 3.1 scaling with original context 128 and high_freq_factor 16 keeps the first (wavelength < 8), divides the last
# two by 8 (> 128) and smooths the five in between, so all three bands act within the 48 positions of the batch.
# gemma3: a window of 4 shorter than the test sequences, linear global scaling; a local-local-global stack, which
# reads differently backwards, so per-layer inputs (window flag, RoPE base) fed in the wrong layer order show.
# qwen3 keeps ModelConfig.tiny's shapes (test_checkpoint_errors.py names them).
TINY = {
    "llama": ModelConfig.tiny("llama", tie_embeddings=False, head_dim=16, norm_eps=2e-2,
                              rope_scaling=RopeScaling("llama3", 8.0, 1.0, 16.0, original_max_position=128)),
    "qwen2": ModelConfig.tiny("qwen2", norm_eps=1e-2),
    "qwen3": ModelConfig.tiny("qwen3", tie_embeddings=False, norm_eps=3e-2),
    "gemma3": ModelConfig.tiny("gemma3", rope_scaling=RopeScaling("linear", 2.0), final_logit_softcap=3.0,
                               layer_types=("local", "local", "global"), num_layers=3, norm_eps=2e-2),
}

# Parity tolerance: max |caujax - reference| over real tokens <= REL_TOL * max |reference logits| and <= ABS_TOL.
# Achieved in float32 on padded_batch: llama 1.6e-6, qwen2 2.4e-6, qwen3 1.9e-6, gemma3 5.0e-6 relative on an AVX2
# CPU; on an AVX-512 one (other matmul kernels on both sides) llama 2.4e-6, qwen2 4.4e-6, qwen3 2.5e-6, gemma3
# 5.2e-6, and on the 2x2x2 mesh (sums split across devices) up to 5.1e-6 (qwen2). That is float32's floor with
# peaked attention: transformers in float32 is itself 1.3-4e-6 from transformers in float64, so two float32
# implementations may sit twice that apart.
REL_TOL = {"llama": 8e-6, "qwen2": 8e-6, "qwen3": 8e-6, "gemma3": 1e-5}
ABS_TOL = 1e-4


def _std(hf_name: str, cfg: ModelConfig) -> tuple[float, float]:
    """(mean, std) of one HF tensor. Gemma stores norm scales centred on 0 (it multiplies by 1 + w)."""
    one = 0.0 if cfg.norm_plus_one else 1.0
    if hf_name.endswith(("q_norm.weight", "k_norm.weight")):
        return one + 1.5, 0.3                     # scale ~2.5: peaked attention after the q/k RMSNorm
    if "norm" in hf_name:
        return one, 0.1
    if hf_name.endswith(("q_proj.weight", "k_proj.weight")):
        return 0.0, 0.45                          # without q/k norm: score std ~ D * 0.45^2 ~ 6
    if hf_name.endswith(("q_proj.bias", "k_proj.bias")):
        return 0.0, 0.5
    if hf_name.endswith("bias"):
        return 0.0, 0.1
    if "embed_tokens" in hf_name or "lm_head" in hf_name:
        return 0.0, 0.25 if cfg.final_logit_softcap else 0.5    # keep Gemma's capped logits off the tanh plateau
    fan_in = {"o_proj": cfg.num_heads * cfg.head_dim, "down_proj": cfg.mlp_dim}
    return 0.0, 1.0 / math.sqrt(next((v for k, v in fan_in.items() if k in hf_name), cfg.embed_dim))


def parity_weights(family: str, seed: int = 0) -> dict[str, np.ndarray]:
    """HF-layout float32 tensors for TINY[family], from numpy's PCG64 stream (stable across platforms)."""
    cfg, rng = TINY[family], np.random.default_rng(seed)
    out = {}
    for spec in tensor_table(cfg):
        mean, std = _std(spec.hf_name, cfg)
        out[spec.hf_name] = (mean + std * rng.standard_normal(hf_shape(spec))).astype(np.float32)
    return out


def torch_model(family: str, weights: dict[str, np.ndarray], attn_implementation: str | None = None):
    """The transformers model of TINY[family] holding `weights`, in eval mode."""
    import torch
    import transformers

    hf_cfg = config_to_hf(TINY[family])
    if attn_implementation:
        hf_cfg._attn_implementation = attn_implementation
    model = transformers.AutoModelForCausalLM.from_config(hf_cfg).eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    if TINY[family].tie_embeddings:
        model.tie_weights()
    return model


def make_hf_checkpoint(family: str, path: pathlib.Path, seed: int = 0):
    """Save a transformers model with `parity_weights` and return it in eval mode."""
    model = torch_model(family, parity_weights(family, seed))
    model.save_pretrained(path)
    return model


def padded_batch(vocab: int = 128, seed: int = 0):
    """Row 0 right-padded, row 1 left-padded, row 2 full; positions count real tokens, as in caujax. 48 columns:
    positions 0..47 span every Llama 3.1 band of TINY["llama"] and many Gemma windows."""
    T = 48
    tokens = np.random.RandomState(seed).randint(1, vocab, (3, T))
    mask = np.ones((3, T), np.int64)
    mask[0, 37:] = 0
    mask[1, :9] = 0
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return tokens, mask, positions


def torch_logits(model, tokens, mask, positions) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(positions))
    return out.logits.float().numpy()


def attention_entropy(family: str, weights: dict[str, np.ndarray]) -> list[float]:
    """Per layer: mean attention entropy over heads and real queries with >= 8 visible keys, divided by the
    entropy of uniform attention over those keys (1 = uniform, 0 = one key). Shows the fixture is peaked."""
    import torch

    model = torch_model(family, weights, attn_implementation="eager")
    tokens, mask, positions = padded_batch()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(positions), output_attentions=True)
    result = []
    for p in out.attentions:                       # [B, N, T, S]
        p = p.double().numpy()
        visible = (p > 0).sum(-1)                  # keys each query sees
        h = -(p * np.log(np.where(p > 0, p, 1))).sum(-1)
        keep = (visible >= 8) & mask.astype(bool)[:, None, :]
        result.append(float((h / np.log(np.maximum(visible, 2)))[keep].mean()) if keep.any() else float("nan"))
    return result


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges (every byte one token) plus specials and a chat template: covers
    any text, needs no training, and round-trips through save_pretrained / AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "<bos>", "<|end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<|end|>")
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<|end|>{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    return tok


def make_tiny_checkpoint_with_tokenizer(path: pathlib.Path, family: str = "qwen2", seed: int = 0):
    """A random tiny caujax model whose vocabulary is the byte tokenizer's, saved as a Hugging Face directory."""
    from flax import nnx

    from caujax.models import Decoder, save_pretrained

    tok = byte_tokenizer()
    cfg = TINY[family].replace(vocab_size=len(tok), eos_token_ids=(tok.eos_token_id,), pad_token_id=0,
                               bos_token_id=tok.bos_token_id)
    save_pretrained(Decoder(cfg, rngs=nnx.Rngs(seed)), tok, path)
    return path


def strong_weights(cfg, seed=0):
    """Random weights (an nnx.State) large enough for peaked attention (DESIGN.md: tiny weights hide position
    bugs)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from caujax.models import Decoder
    from caujax.models.layout import is_matrix

    abstract = nnx.state(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))   # no eager init: no compiles
    rng = np.random.RandomState(seed)
    identity = 0.0 if cfg.norm_plus_one else 1.0

    def draw(path, x):     # matrices N(0, 0.3); norm scales near identity and biases near 0, +- 0.1
        if is_matrix(path):
            return jnp.asarray(0.3 * rng.standard_normal(x.shape), x.dtype)
        base = identity if "scale" in jax.tree_util.keystr(path) else 0.0
        return jnp.asarray(base + 0.1 * rng.standard_normal(x.shape), x.dtype)
    return jax.tree_util.tree_map_with_path(draw, abstract)
