"""Hugging Face checkpoints in and out: safetensors <-> decoder parameters (config.json is hf_config.py's).

Where a checkpoint contradicts itself (a tied config with a different stored head, two weight sources) the loader
does what transformers 5.24 does and says so, or refuses naming the tensor and file; it never picks silently.
Loading streams one tensor at a time from the (possibly sharded) safetensors files straight onto its device
sharding, so the host never holds a second full copy of the model.
"""
from __future__ import annotations

import json
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from caujax.models.config import ModelConfig
from caujax.models.decoder import Decoder
# config.json <-> ModelConfig lives in hf_config.py; its names stay importable from here.
from caujax.models.hf_config import (ARCHITECTURES, SUPPORTED, CheckpointError, config_from_hf,  # noqa: F401
                                     config_to_hf, declared_ids, generation_config_to_hf)
from caujax.models.tensors import TensorSpec, hf_shape, tensor_table
from caujax.sharding import fetch_global, variable_sharder

# Tensors some checkpoints carry that the decoder recomputes or does not use.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def _tensor_index(path: pathlib.Path) -> dict[str, pathlib.Path]:
    """tensor name -> safetensors file. As transformers 5.24 (modeling_utils._get_resolved_checkpoint_files):
    model.safetensors if present, else model.safetensors.index.json; with neither, every *.safetensors file.
    Raises CheckpointError when there are no weights, or two files of the last kind hold the same tensor."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.exists():
        if index.exists():
            warnings.warn(f"{path}: holds both model.safetensors and model.safetensors.index.json; reading "
                          "model.safetensors, as transformers does (the index and its shards are ignored)",
                          stacklevel=4)
        files = [single]
    elif index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{index}: no readable weight_map ({err!r})") from err
        return {name: path / fname for name, fname in weight_map.items()}
    else:
        files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors files and no model.safetensors.index.json")
    out: dict[str, pathlib.Path] = {}
    for f in files:
        with safe_open(f, "numpy") as handle:
            for name in handle.keys():
                if name in out:       # no index to say which copy is meant
                    raise CheckpointError(f"{path}: tensor {name} is stored in both {out[name].name} and {f.name} "
                                          "and no model.safetensors.index.json says which to use")
                out[name] = f
    return out


def _prefix(names) -> str:
    """Gemma 3 multimodal checkpoints nest the text decoder under model.language_model."""
    for prefix in ("model.", "model.language_model.", "language_model.model."):
        if f"{prefix}embed_tokens.weight" in names:
            return prefix
    return "model."


def load_weights(model_cfg: ModelConfig, fetch, names, source: str, shardings=None, locate=None):
    """Build a Decoder from a tensor source: `fetch(name) -> np.ndarray` in HF layout, `names` all it holds,
    `locate(name) -> str` the file that holds a tensor (default: `source`), for messages.

    Every table entry must be present with its HF shape; nothing the table does not know may be left over
    (CheckpointError naming the tensors). A config that ties the head to the embedding while the checkpoint also
    stores a different lm_head.weight is untied with a warning (_stored_head); the returned model's cfg says so."""
    locate = locate or (lambda name: source)
    prefix = _prefix(names)
    if model_cfg.tie_embeddings and "lm_head.weight" in names:
        model_cfg = _stored_head(model_cfg, fetch, f"{prefix}embed_tokens.weight", locate)
    specs = tensor_table(model_cfg, prefix)
    wanted = {s.hf_name for s in specs}
    missing = [n for n in wanted if n not in names]
    if missing:
        raise CheckpointError(f"{source}: missing tensor(s) {sorted(missing)[:5]}"
                              f"{' ...' if len(missing) > 5 else ''} ({len(missing)} missing)")
    # Left in `names` only when tied and equal to the embedding (_stored_head): the same tensor twice.
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
            value = _convert(group[0], fetch(group[0].hf_name), dtype, locate(group[0].hf_name))
        else:
            value = np.empty(var.shape, dtype)
            for spec in group:
                value[spec.layer] = _convert(spec, fetch(spec.hf_name), dtype, locate(spec.hf_name))
        sharding = None if shardings is None else shardings(var)
        flat[path] = var.replace(jax.device_put(value, sharding) if sharding is not None else jnp.asarray(value))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def _stored_head(cfg: ModelConfig, fetch, embed_name: str, locate) -> ModelConfig:
    """The config for a checkpoint whose config ties the output head to the embedding but which also stores
    lm_head.weight. As transformers 5.24 (PreTrainedModel.tie_weights during from_pretrained): equal to the
    embedding bit for bit (torch.equal), it is the same tensor and stays tied; different, the stored head is used
    and the model untied, with a warning naming the tensor and its file. Costs one extra read of both tensors."""
    head, embed = fetch("lm_head.weight"), fetch(embed_name)
    if head.shape == embed.shape and np.array_equal(head, embed):
        return cfg
    diff = (f"max |lm_head - embedding| = {np.abs(head.astype(np.float32) - embed.astype(np.float32)).max():.3g}"
            if head.shape == embed.shape else f"shape {tuple(head.shape)} vs {tuple(embed.shape)}")
    warnings.warn(f"{locate('lm_head.weight')}: stores lm_head.weight, which differs from {embed_name} ({diff}), "
                  "although the config says tie_word_embeddings=true; using the stored head and untying the model, "
                  "as transformers does (export writes tie_word_embeddings=false)", stacklevel=4)
    return cfg.replace(tie_embeddings=False)


def _convert(spec: TensorSpec, array: np.ndarray, dtype, source: str) -> np.ndarray:
    """One HF tensor, shape-checked, in decoder layout and dtype."""
    if tuple(array.shape) != hf_shape(spec):
        raise CheckpointError(f"{source}: tensor {spec.hf_name} has shape {tuple(array.shape)}, "
                              f"expected {hf_shape(spec)}")
    return np.asarray(spec.to_decoder(array)).astype(dtype)


def load_hf_dir(path, dtype: str | None = None, mesh=None, rules=None):
    """(model, tokenizer) from a Hugging Face directory; with `mesh`, tensors land directly in their shardings.
    The model's token ids are every declaration of the directory (hf_config.declared_ids): config.json,
    generation_config.json and the tokenizer; its eos_token_ids their union."""
    import transformers

    path = pathlib.Path(path)
    config_json = path / "config.json"
    if not config_json.exists():
        raise CheckpointError(f"{path}: no config.json (expected a Hugging Face checkpoint directory)")
    model_type = json.loads(config_json.read_text()).get("model_type")
    if model_type not in SUPPORTED:
        raise CheckpointError(f"{config_json}: unsupported model_type {model_type!r}; "
                              f"supported: {sorted(SUPPORTED)}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path) if _has_tokenizer(path) else None
    cfg = config_from_hf(transformers.AutoConfig.from_pretrained(path), dtype, source=str(config_json))
    cfg = declared_ids(cfg, path, tokenizer)
    index = _tensor_index(path)
    handles: dict[pathlib.Path, object] = {}

    def fetch(name):
        f = index[name]
        if f not in handles:
            handles[f] = safe_open(f, "numpy")
        return handles[f].get_tensor(name)

    model = load_weights(cfg, fetch, set(index), str(path), variable_sharder(mesh, rules),
                         locate=lambda name: str(index[name]))
    return model, tokenizer


def _has_tokenizer(path: pathlib.Path) -> bool:
    return any((path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


# One compiled slice per parameter shape (a static index would compile once per layer).
_layer_slice = jax.jit(lambda x, i: jax.lax.dynamic_index_in_dim(x, i, keepdims=False))


def save_pretrained(model: Decoder, tokenizer, path, max_shard_bytes: int = 4 << 30) -> None:
    """Write config.json, generation_config.json (every stop id, hf_config.generation_config_to_hf), safetensors
    (sharded with an index past max_shard_bytes) and the tokenizer. Weights of an earlier export there are replaced:
    a stale index or shard would be a second, contradicting weight source."""
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
    generation_config_to_hf(cfg).save_pretrained(path)
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
    for old in [*path.glob("*.safetensors"), path / "model.safetensors.index.json"]:
        old.unlink(missing_ok=True)
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

