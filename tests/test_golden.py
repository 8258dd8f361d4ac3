"""Decoder logits against stored transformers logits (tests/golden/*.npy): readable and bisectable without torch.
Regenerate with `python tests/golden/make_golden.py` only when the tiny configs, weights or batch change.

The config goes through config_to_hf and back, as a checkpoint's would, so config import is checked too."""
from __future__ import annotations

import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from caujax.models.hf import config_from_hf, config_to_hf, load_weights
from model_fixtures import ABS_TOL, FAMILIES, REL_TOL, TINY, padded_batch

sys.path.insert(0, str(pathlib.Path(__file__).parent / "golden"))
from make_golden import golden_weights  # noqa: E402


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_golden_file(family):
    """Catches, for every family it concerns: RoPE base x2, Llama 3.1 medium band unsmoothed, a hard-coded norm eps,
    the eps read from the family default instead of rms_norm_eps, q/k RMSNorm after RoPE."""
    cfg = config_from_hf(config_to_hf(TINY[family]))
    weights = golden_weights(family)
    model = load_weights(cfg, weights.__getitem__, set(weights), f"golden:{family}")
    tokens, mask, _ = padded_batch()
    golden = np.load(pathlib.Path(__file__).parent / "golden" / f"{family}.npy")
    diff = float(np.abs(np.asarray(model(jnp.asarray(tokens), jnp.asarray(mask))) - golden)[mask.astype(bool)].max())
    scale = float(np.abs(golden).max())
    print(f"{family}: max |caujax - golden| = {diff:.2e} (relative {diff / scale:.2e}, max |logit| {scale:.2f})")
    assert diff <= REL_TOL[family] * scale and diff <= ABS_TOL, f"{family}: max diff {diff:.2e}"
