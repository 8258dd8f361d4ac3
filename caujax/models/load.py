"""`load_pretrained`: one entry for Hugging Face checkpoint directories and GGUF files."""
from __future__ import annotations

import pathlib


def load_pretrained(path, dtype: str | None = None, mesh=None, rules=None):
    """(model, tokenizer) from a Hugging Face checkpoint directory or a `.gguf` file.

    dtype: "float32" or "bfloat16" for parameters and compute (default float32). With `mesh`, every tensor is
    placed directly into its sharding under `rules` (sharding.TRAIN_RULES by default)."""
    path = pathlib.Path(path)
    if path.suffix == ".gguf":
        from caujax.models.gguf import load_gguf
        return load_gguf(path, dtype=dtype, mesh=mesh, rules=rules)
    from caujax.models.hf import load_hf_dir
    return load_hf_dir(path, dtype=dtype, mesh=mesh, rules=rules)
