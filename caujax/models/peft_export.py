"""LoRA adapters as a PEFT adapter directory, which `peft.PeftModel.from_pretrained(base, path)` loads on top of the
Hugging Face base checkpoint (the adapter alone: megabytes, not the model).

The config file is written by peft's own LoraConfig (so its fields are what peft expects); the weights follow
peft's saved-key layout: `base_model.model.<module>.lora_A.weight` [r, in] and `lora_B.weight` [out, r], with the
input and output axes flattened in the order the HF weight flattens them (models/tensors.py: heads, then head_dim).
"""
from __future__ import annotations

import pathlib

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from caujax.models.config import TARGETS
from caujax.sharding import fetch_global
from caujax.staged_dir import staged_dir


def adapter_tensors(model) -> dict[str, np.ndarray]:
    """{peft key: float32 array} for every adapter of `model` (a Decoder whose cfg.lora is set); ValueError for a
    model without adapters."""
    cfg = model.cfg
    if cfg.lora is None:
        raise ValueError("the model has no LoRA adapters to export (model.lora.rank is 0)")
    flat = {".".join(map(str, k)): v for k, v in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam))}
    r, out = cfg.lora.rank, {}
    for target in cfg.lora.targets:
        part = "attn" if TARGETS[target].startswith("self_attn") else "mlp"
        a = fetch_global(flat[f"layers.{part}.{target}_lora.a"][...]).astype(np.float32)     # [L, in..., r]
        b = fetch_global(flat[f"layers.{part}.{target}_lora.b"][...]).astype(np.float32)     # [L, r, out...]
        for i in range(cfg.num_layers):
            key = f"base_model.model.model.layers.{i}.{TARGETS[target]}"
            out[f"{key}.lora_A.weight"] = np.ascontiguousarray(a[i].reshape(-1, r).T)
            out[f"{key}.lora_B.weight"] = np.ascontiguousarray(b[i].reshape(r, -1).T)
    return out


def save_adapter(model, path, base: str | None = None, extra_files: dict[str, str] | None = None) -> None:
    """Write adapter_config.json and adapter_model.safetensors under `path` (process 0 writes; every process joins
    the gathers). `base`: the base checkpoint the adapter applies to, recorded as base_model_name_or_path;
    `extra_files`: {name: text} written into the directory too (train.py's export marker).
    Raises ImportError naming the extra when peft is not installed."""
    try:
        import peft
    except ImportError as e:
        raise ImportError("lora.export=peft writes the adapter with peft's own config class: pip install "
                          "'caujax[peft]' (or use lora.export=merged for a plain Hugging Face directory)") from e
    tensors = adapter_tensors(model)
    if jax.process_index() != 0:
        return
    lo, path = model.cfg.lora, pathlib.Path(path)
    config = peft.LoraConfig(r=lo.rank, lora_alpha=lo.alpha if lo.alpha is not None else lo.rank,
                             lora_dropout=lo.dropout, bias="none", task_type="CAUSAL_LM",
                             target_modules=sorted(TARGETS[t].split(".")[-1] for t in lo.targets),
                             base_model_name_or_path=base)
    with staged_dir(path) as staged:
        staged.mkdir(parents=True)
        config.save_pretrained(staged)
        save_file(tensors, staged / "adapter_model.safetensors", metadata={"format": "pt"})
        for name, value in (extra_files or {}).items():
            (staged / name).write_text(value)
