"""Hugging Face checkpoints in and out: config.json <-> ModelConfig, safetensors <-> decoder parameters.

Loading streams one tensor at a time from the (possibly sharded) safetensors files straight onto its device
sharding, so the host never holds a second full copy of the model.
"""
from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from caujax.models.config import FAMILY_FLAGS, ModelConfig, RopeScaling
from caujax.models.decoder import Decoder
from caujax.models.tensors import TensorSpec, hf_shape, tensor_table
from caujax.sharding import fetch_global, variable_sharder

SUPPORTED = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3", "gemma3": "gemma3"}
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                 "gemma3": "Gemma3ForCausalLM"}
# Tensors some checkpoints carry that the decoder recomputes or does not use.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class CheckpointError(ValueError):
    """A checkpoint that does not fit the decoder; the message names the file and tensor."""


def config_from_hf(hf, dtype: str | None = None) -> ModelConfig:
    """ModelConfig from a transformers config object (v5: RoPE lives in `rope_parameters`)."""
    model_type = hf.model_type
    if model_type not in SUPPORTED:
        raise CheckpointError(f"unsupported model_type {model_type!r}; supported: {sorted(SUPPORTED)}")
    if model_type == "gemma3":            # multimodal wrapper: the decoder is its text model
        hf = hf.get_text_config()
    family = SUPPORTED[model_type]
    act = getattr(hf, "hidden_activation", None) or getattr(hf, "hidden_act", None)
    expected_act = "gelu_pytorch_tanh" if family == "gemma3" else "silu"
    if act != expected_act:
        raise CheckpointError(f"{model_type}: activation {act!r} is not supported (expected {expected_act!r})")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(hf, flag, False) and family != "qwen2":
            raise CheckpointError(f"{model_type}: {flag}=True is not supported by the decoder")
    rope = hf.rope_parameters or {}
    global_rope = rope.get("full_attention", rope)
    local_rope = rope.get("sliding_attention", global_rope)
    layer_types = tuple("local" if t == "sliding_attention" else "global" for t in (getattr(hf, "layer_types", None) or ()))
    eos = hf.eos_token_id
    fields = dict(FAMILY_FLAGS[family])
    fields.update(
        family=family, vocab_size=hf.vocab_size, embed_dim=hf.hidden_size, num_layers=hf.num_hidden_layers,
        num_heads=hf.num_attention_heads, num_kv_heads=hf.num_key_value_heads,
        head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
        mlp_dim=hf.intermediate_size, norm_eps=hf.rms_norm_eps, tie_embeddings=bool(hf.tie_word_embeddings),
        rope_theta=float(global_rope.get("rope_theta", 10_000.0)), rope_scaling=_rope_scaling(global_rope),
        rope_local_theta=float(local_rope.get("rope_theta", global_rope.get("rope_theta", 10_000.0))),
        layer_types=layer_types if "local" in layer_types else (),
        sliding_window=getattr(hf, "sliding_window", None) if "local" in layer_types else None,
        max_position=hf.max_position_embeddings, bos_token_id=hf.bos_token_id, pad_token_id=hf.pad_token_id,
        eos_token_ids=tuple(eos if isinstance(eos, list) else ([] if eos is None else [eos])),
        param_dtype=dtype or "float32", compute_dtype=dtype or "float32",
    )
    if family == "gemma3":
        fields.update(query_pre_attn_scalar=float(hf.query_pre_attn_scalar),
                      final_logit_softcap=hf.final_logit_softcapping, attn_logit_softcap=hf.attn_logit_softcapping)
    return ModelConfig(**fields)


def _rope_scaling(rope: dict) -> RopeScaling | None:
    kind = rope.get("rope_type", "default")
    if kind == "default":
        return None
    if kind == "linear":
        return RopeScaling("linear", float(rope["factor"]))
    if kind == "llama3":
        return RopeScaling("llama3", float(rope["factor"]), float(rope["low_freq_factor"]),
                           float(rope["high_freq_factor"]), int(rope["original_max_position_embeddings"]))
    raise CheckpointError(f"rope_type {kind!r} is not supported (supported: default, linear, llama3)")


def config_to_hf(cfg: ModelConfig):
    """The transformers config object that describes the same model (for export)."""
    import transformers

    def rope(theta, scaling):
        params = {"rope_type": "default", "rope_theta": theta}
        if scaling is not None and scaling.kind == "linear":
            params.update(rope_type="linear", factor=scaling.factor)
        elif scaling is not None:
            params.update(rope_type="llama3", factor=scaling.factor, low_freq_factor=scaling.low_freq_factor,
                          high_freq_factor=scaling.high_freq_factor,
                          original_max_position_embeddings=scaling.original_max_position)
        return params

    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.embed_dim, intermediate_size=cfg.mlp_dim,
                  num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                  num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps,
                  tie_word_embeddings=cfg.tie_embeddings, max_position_embeddings=cfg.max_position,
                  bos_token_id=cfg.bos_token_id, pad_token_id=cfg.pad_token_id,
                  eos_token_id=(list(cfg.eos_token_ids) if len(cfg.eos_token_ids) > 1 else
                                (cfg.eos_token_ids[0] if cfg.eos_token_ids else None)),
                  architectures=[ARCHITECTURES[cfg.family]], dtype=cfg.param_dtype)
    layer_types = [("sliding_attention" if cfg.layer_type(i) == "local" else "full_attention")
                   for i in range(cfg.num_layers)]
    if cfg.family == "gemma3":
        return transformers.Gemma3TextConfig(
            **common, query_pre_attn_scalar=_int_if_whole(cfg.query_pre_attn_scalar), sliding_window=cfg.sliding_window,
            layer_types=layer_types, final_logit_softcapping=cfg.final_logit_softcap,
            attn_logit_softcapping=cfg.attn_logit_softcap,
            rope_parameters={"full_attention": rope(cfg.rope_theta, cfg.rope_scaling),
                             "sliding_attention": rope(cfg.rope_local_theta or cfg.rope_theta, None)})
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
           "qwen3": transformers.Qwen3Config}[cfg.family]
    extra = {"hidden_act": "silu", "rope_parameters": rope(cfg.rope_theta, cfg.rope_scaling)}
    if cfg.family != "llama" and cfg.sliding_window:
        extra.update(use_sliding_window=True, sliding_window=cfg.sliding_window, layer_types=layer_types)
    return cls(**common, **extra)


def _int_if_whole(x):
    """transformers' strict config fields want an int for Gemma's query_pre_attn_scalar (256, not 256.0)."""
    return int(x) if x is not None and float(x).is_integer() else x


def _tensor_index(path: pathlib.Path) -> dict[str, pathlib.Path]:
    """tensor name -> safetensors file, from model.safetensors.index.json or the single/all shard files."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: path / fname for name, fname in weight_map.items()}
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors files and no model.safetensors.index.json")
    out = {}
    for f in files:
        with safe_open(f, "numpy") as handle:
            out.update({name: f for name in handle.keys()})
    return out


def _prefix(names) -> str:
    """Gemma 3 multimodal checkpoints nest the text decoder under model.language_model."""
    for prefix in ("model.", "model.language_model.", "language_model.model."):
        if f"{prefix}embed_tokens.weight" in names:
            return prefix
    return "model."


def load_weights(model_cfg: ModelConfig, fetch, names, source: str, shardings=None):
    """Build a Decoder from a tensor source: `fetch(name) -> np.ndarray` in HF layout, `names` all it holds.
    Every table entry must be present with its HF shape; nothing the table does not know may be left over."""
    specs = tensor_table(model_cfg, _prefix(names))
    wanted = {s.hf_name for s in specs}
    missing = [n for n in wanted if n not in names]
    if missing:
        raise CheckpointError(f"{source}: missing tensor(s) {sorted(missing)[:5]}"
                              f"{' ...' if len(missing) > 5 else ''} ({len(missing)} missing)")
    tolerated = {"lm_head.weight"} if model_cfg.tie_embeddings else set()
    extra = [n for n in names if n not in wanted and n not in tolerated and not n.endswith(_IGNORED_SUFFIXES)
             and "vision_tower" not in n and "multi_modal_projector" not in n]
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor(s) {sorted(extra)[:5]} for a {model_cfg.family} model "
                              f"with {model_cfg.num_layers} layers")
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Decoder(model_cfg, rngs=nnx.Rngs(0))))
    flat = dict(nnx.to_flat_state(abstract))
    dtype = jnp.dtype(model_cfg.param_dtype)
    by_path: dict[tuple, list[TensorSpec]] = {}
    for spec in specs:
        by_path.setdefault(spec.path, []).append(spec)
    # One parameter at a time: the host holds at most one stacked [L, ...] kind (all layers' q, say), not the model.
    for path, group in by_path.items():
        var = flat[path]
        if group[0].layer is None:
            value = _convert(group[0], fetch(group[0].hf_name), dtype, source)
        else:
            value = np.empty(var.shape, dtype)
            for spec in group:
                value[spec.layer] = _convert(spec, fetch(spec.hf_name), dtype, source)
        sharding = None if shardings is None else shardings(var)
        flat[path] = var.replace(jax.device_put(value, sharding) if sharding is not None else jnp.asarray(value))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def _convert(spec: TensorSpec, array: np.ndarray, dtype, source: str) -> np.ndarray:
    """One HF tensor, shape-checked, in decoder layout and dtype."""
    if tuple(array.shape) != hf_shape(spec):
        raise CheckpointError(f"{source}: tensor {spec.hf_name} has shape {tuple(array.shape)}, "
                              f"expected {hf_shape(spec)}")
    return np.asarray(spec.to_decoder(array)).astype(dtype)


def load_hf_dir(path, dtype: str | None = None, mesh=None, rules=None):
    """(model, tokenizer) from a Hugging Face directory; with `mesh`, tensors land directly in their shardings."""
    import transformers

    path = pathlib.Path(path)
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: no config.json (expected a Hugging Face checkpoint directory)")
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type not in SUPPORTED:
        raise CheckpointError(f"{path}/config.json: unsupported model_type {model_type!r}; "
                              f"supported: {sorted(SUPPORTED)}")
    cfg = config_from_hf(transformers.AutoConfig.from_pretrained(path), dtype)
    index = _tensor_index(path)
    handles: dict[pathlib.Path, object] = {}

    def fetch(name):
        f = index[name]
        if f not in handles:
            handles[f] = safe_open(f, "numpy")
        return handles[f].get_tensor(name)

    model = load_weights(cfg, fetch, set(index), str(path), variable_sharder(mesh, rules))
    tokenizer = transformers.AutoTokenizer.from_pretrained(path) if _has_tokenizer(path) else None
    return model, tokenizer


def _has_tokenizer(path: pathlib.Path) -> bool:
    return any((path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


# One compiled slice per parameter shape (a static index would compile once per layer).
_layer_slice = jax.jit(lambda x, i: jax.lax.dynamic_index_in_dim(x, i, keepdims=False))


def save_pretrained(model: Decoder, tokenizer, path, max_shard_bytes: int = 4 << 30) -> None:
    """Write config.json, safetensors (sharded with an index past max_shard_bytes) and the tokenizer."""
    path = pathlib.Path(path)
    cfg = model.cfg
    if cfg.lora is not None:        # the table below has no place for adapters: they would be dropped silently
        raise ValueError("save_pretrained got a model with LoRA adapters; merge them first (models/lora.py "
                         "merge_adapters) or write a PEFT adapter directory (models/peft_export.py save_adapter)")
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    if jax.process_count() > 1:
        # Every host must join the gathers; only the first one writes.
        gathered = {k: fetch_global(v[...]) for k, v in flat.items()}
        if jax.process_index() != 0:
            return
        flat = {k: nnx.Param(v) for k, v in gathered.items()}
    path.mkdir(parents=True, exist_ok=True)
    config_to_hf(cfg).save_pretrained(path)
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for spec in tensor_table(cfg):
        value = flat[spec.path][...]
        if spec.layer is not None:    # slice on device: the host gathers one layer's tensor, never a whole stack
            value = spec.select(value) if isinstance(value, np.ndarray) else _layer_slice(value, np.int32(spec.layer))
        array = np.ascontiguousarray(spec.to_hf(fetch_global(value)))
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][spec.hf_name] = array
        size += array.nbytes
    for old in path.glob("*.safetensors"):
        old.unlink()
    if len(shards) == 1:
        save_file(shards[0], path / "model.safetensors", metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, path / fname, metadata={"format": "pt"})
            weight_map.update({name: fname for name in shard})
        total = sum(a.nbytes for s in shards for a in s.values())
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(path)

