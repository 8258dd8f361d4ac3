"""A broken Hugging Face checkpoint fails with a message naming the problem, never a shape error deep in jax."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from caujax.models import CheckpointError, load_pretrained
from model_fixtures import make_hf_checkpoint


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen3")
    make_hf_checkpoint("qwen3", path)
    return path


def _edit_tensors(src, dst, edit):
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_missing_tensor_is_named(good_dir, tmp_path):
    bad = _edit_tensors(good_dir, tmp_path / "bad", lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor.*model\.layers\.1\.mlp\.up_proj\.weight"):
        load_pretrained(bad)


def test_wrong_shape_is_named_with_both_shapes(good_dir, tmp_path):
    def shrink(t):
        t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((8, 32), np.float32)
    bad = _edit_tensors(good_dir, tmp_path / "bad", shrink)
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.self_attn\.k_proj\.weight has shape \(8, 32\), "
                                              r"expected \(16, 32\)"):
        load_pretrained(bad)


def test_unexpected_tensor_is_named(good_dir, tmp_path):
    def add(t):
        t["model.layers.2.mlp.up_proj.weight"] = np.zeros((64, 32), np.float32)
    bad = _edit_tensors(good_dir, tmp_path / "bad", add)
    with pytest.raises(CheckpointError, match=r"unexpected tensor.*model\.layers\.2\.mlp\.up_proj\.weight"):
        load_pretrained(bad)


def test_unsupported_model_type_lists_supported(good_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(good_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    config["model_type"] = "mixtral"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"unsupported model_type 'mixtral'.*gemma3.*llama.*qwen2.*qwen3"):
        load_pretrained(bad)


def test_not_a_checkpoint_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_pretrained(tmp_path)
