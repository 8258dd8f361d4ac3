"""Write tests/golden/<family>.npy: transformers' float32 logits on model_fixtures.padded_batch for TINY[family]
holding model_fixtures.parity_weights (seeded numpy, so test_golden.py rebuilds the same weights without torch).
Run `python tests/golden/make_golden.py` whenever TINY, parity_weights or padded_batch change."""
from __future__ import annotations

import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from model_fixtures import FAMILIES, padded_batch, parity_weights, torch_logits, torch_model  # noqa: E402

SEED = 2024


def golden_weights(family: str) -> dict[str, np.ndarray]:
    """HF-layout tensors drawn from numpy's PCG64 stream (stable across platforms and numpy versions)."""
    return parity_weights(family, SEED)


def main():
    for family in FAMILIES:
        logits = torch_logits(torch_model(family, golden_weights(family)), *padded_batch())
        np.save(HERE / f"{family}.npy", logits)
        print(f"wrote {HERE / f'{family}.npy'}: shape {logits.shape}, max |logit| {np.abs(logits).max():.2f}")


if __name__ == "__main__":
    main()
