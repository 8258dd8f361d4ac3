"""`load_pretrained`: one entry for Hugging Face checkpoint directories and GGUF files."""
from __future__ import annotations

import ctypes
import pathlib


def load_pretrained(path, dtype: str | None = None, mesh=None, rules=None):
    """(model, tokenizer) from a Hugging Face checkpoint directory or a `.gguf` file.

    dtype: "float32" or "bfloat16" for parameters and compute (default float32). With `mesh`, every tensor is
    placed directly into its sharding under `rules` (sharding.TRAIN_RULES by default)."""
    path = pathlib.Path(path)
    if path.suffix == ".gguf":
        from caujax.models.gguf import load_gguf
        out = load_gguf(path, dtype=dtype, mesh=mesh, rules=rules)
    else:
        from caujax.models.hf import load_hf_dir
        out = load_hf_dir(path, dtype=dtype, mesh=mesh, rules=rules)
    release_host_memory()
    return out


def release_host_memory() -> None:
    """Hand freed heap pages back to the OS (glibc malloc_trim; a no-op elsewhere). Loading converts every tensor
    on the host (dequantize, cast) and frees the copies, but glibc keeps the pages: 0.5 GB of Gemma-3-270M's
    GGUF load stayed resident through training, a tenth of its SFT step's peak (bench/README.md, memory)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# What with_run_settings may change: how the same arrays are computed with. Not param_dtype (the arrays keep
# theirs), lora (adapters are new parameters) nor any architecture field (the weights would mean another model).
REBUILDABLE = ("compute_dtype", "remat", "attention", "attention_block", "scan_layers")


def with_run_settings(model, **settings):
    """`model` (a Decoder) rebuilt around the same parameter arrays (nothing copied) with some of REBUILDABLE
    changed in its ModelConfig, e.g. attention="plain". ValueError naming any other field, or a value ModelConfig
    refuses."""
    other = sorted(set(settings) - set(REBUILDABLE))
    if other:
        raise ValueError(f"with_run_settings changes only {REBUILDABLE}, not {other}")
    from flax import nnx

    from caujax.models.decoder import Decoder

    arch = model.cfg.replace(**settings)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(arch, rngs=nnx.Rngs(0))))
    return nnx.merge(graphdef, nnx.state(model))
