"""Write tests/golden/<family>.npy: transformers' logits for a tiny model whose weights come from a seeded numpy
generator, so test_golden.py can check the decoder without torch. Run: python tests/golden/make_golden.py"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from model_fixtures import FAMILIES, TINY, padded_batch, torch_logits  # noqa: E402

from caujax.models.hf import config_to_hf  # noqa: E402
from caujax.models.tensors import hf_shape, tensor_table  # noqa: E402


def golden_weights(family: str) -> dict[str, np.ndarray]:
    """HF-layout tensors drawn from numpy's PCG64 stream (stable across platforms and numpy versions)."""
    rng = np.random.default_rng(2024)
    return {s.hf_name: rng.normal(0.0, 0.1, hf_shape(s)).astype(np.float32) for s in tensor_table(TINY[family])}


def main():
    import torch
    import transformers

    for family in FAMILIES:
        model = transformers.AutoModelForCausalLM.from_config(config_to_hf(TINY[family])).eval()
        weights = {k: torch.from_numpy(v) for k, v in golden_weights(family).items()}
        missing, unexpected = model.load_state_dict(weights, strict=False)
        assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
        np.save(HERE / f"{family}.npy", torch_logits(model, *padded_batch()))
        print(f"wrote {HERE / f'{family}.npy'}")


if __name__ == "__main__":
    main()
