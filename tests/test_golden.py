"""Decoder logits against stored transformers logits (tests/golden/*.npy): readable and bisectable without torch.
Regenerate with `python tests/golden/make_golden.py` only when the tiny configs change."""
from __future__ import annotations

import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from caujax.models.hf import load_weights
from model_fixtures import FAMILIES, TINY, padded_batch

sys.path.insert(0, str(pathlib.Path(__file__).parent / "golden"))
from make_golden import golden_weights  # noqa: E402


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_golden_file(family):
    weights = golden_weights(family)
    model = load_weights(TINY[family], weights.__getitem__, set(weights), f"golden:{family}")
    tokens, mask, _ = padded_batch()
    golden = np.load(pathlib.Path(__file__).parent / "golden" / f"{family}.npy")
    diff = np.abs(np.asarray(model(jnp.asarray(tokens), jnp.asarray(mask))) - golden)[mask.astype(bool)]
    assert diff.max() <= 1e-4, f"{family}: max diff {diff.max():.2e}"
