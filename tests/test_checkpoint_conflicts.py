"""A checkpoint that contradicts itself is never resolved silently (issue 13, kind 7): the loaders do what
transformers 5.24 (or llama.cpp, for GGUF) does and warn, or refuse naming the tensor, key and file. Also: an
unsupported RoPE type is refused naming config.json."""
from __future__ import annotations

import json
import re
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from caujax.models import CheckpointError, load_pretrained, save_pretrained
from caujax.models.hf import config_to_hf
from model_fixtures import (ABS_TOL, REL_TOL, TINY, make_tiny_checkpoint_with_tokenizer, padded_batch, parity_weights,
                            torch_logits)


def _write(path, family: str, weights: dict, *, tie: bool, shards: int = 1):
    """A checkpoint directory of TINY[family] with tie_word_embeddings=`tie` in config.json and exactly `weights`
    in `shards` safetensors files (an index when more than one)."""
    config_to_hf(TINY[family].replace(tie_embeddings=tie)).save_pretrained(path)
    names = list(weights)
    if shards == 1:
        save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
        return path
    weight_map = {}
    for i in range(shards):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: weights[n] for n in names[i::shards]}
        save_file(part, path / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


def _reference(path):
    """transformers' own load of the directory, and its logits on the padded batch."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, torch_logits(model, *padded_batch())


def _max_diff(model, ref) -> float:
    tokens, mask, _ = padded_batch()
    logits = np.asarray(model(jnp.asarray(tokens), jnp.asarray(mask)))
    return float(np.abs(logits - ref)[mask.astype(bool)].max())


def _conflict_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "lm_head.weight" in str(w.message)]


# --- kind 7: tie_word_embeddings true, lm_head.weight stored as well -----------------------------------------------

def test_tied_config_with_a_different_stored_head_uses_the_head_like_transformers(tmp_path):
    """The issue's example: config.json says tie_word_embeddings true, model.safetensors also holds an lm_head
    that differs from the embedding. transformers uses the stored head (untied); so does caujax, with a warning
    naming the tensor and the file. Tying instead moves the logits by ~16."""
    weights = parity_weights("llama")                       # TINY llama is untied: its head is its own tensor
    path = _write(tmp_path, "llama", weights, tie=True)
    reference, ref = _reference(path)
    assert reference.lm_head.weight.data_ptr() != reference.model.embed_tokens.weight.data_ptr()   # untied
    with pytest.warns(UserWarning, match=r"model\.safetensors: stores lm_head\.weight, which differs from "
                                         r"model\.embed_tokens\.weight") as record:
        model, _ = load_pretrained(path)
    assert len(_conflict_warnings(record)) == 1
    assert not model.cfg.tie_embeddings
    diff = _max_diff(model, ref)
    assert diff <= REL_TOL["llama"] * np.abs(ref).max() and diff <= ABS_TOL, diff
    tied = load_pretrained(_write(tmp_path / "tied", "llama",
                                  {k: v for k, v in weights.items() if k != "lm_head.weight"}, tie=True))[0]
    print(f"max |logit diff| vs transformers: stored head {diff:.1e}, embedding as head {_max_diff(tied, ref):.1f}")
    assert _max_diff(tied, ref) > 5                         # what dropping the head cost

    save_pretrained(model, None, tmp_path / "export")       # the export says what it holds
    assert json.loads((tmp_path / "export" / "config.json").read_text())["tie_word_embeddings"] is False
    assert _max_diff(load_pretrained(tmp_path / "export")[0], ref) <= ABS_TOL


def test_sharded_tied_qwen3_with_a_stored_head_names_its_shard(tmp_path):
    """Variant: another family (q/k norms), sharded with an index; the warning names the shard holding the head."""
    rng = np.random.default_rng(7)
    weights = parity_weights("qwen3")
    weights["lm_head.weight"] = (0.5 * rng.standard_normal(weights["lm_head.weight"].shape)).astype(np.float32)
    path = _write(tmp_path, "qwen3", weights, tie=True, shards=3)
    shard = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]["lm_head.weight"]
    _, ref = _reference(path)
    with pytest.warns(UserWarning, match=rf"{shard}: stores lm_head\.weight"):
        model, _ = load_pretrained(path)
    assert not model.cfg.tie_embeddings and _max_diff(model, ref) <= ABS_TOL


def test_an_identical_stored_head_stays_tied_without_a_word(tmp_path):
    """A tied model whose file also holds the head as an exact copy (torch .bin conversions do) is fine."""
    weights = parity_weights("qwen2")                       # TINY qwen2 is tied
    weights["lm_head.weight"] = weights["model.embed_tokens.weight"].copy()
    path = _write(tmp_path, "qwen2", weights, tie=True)
    _, ref = _reference(path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model, _ = load_pretrained(path)
    assert not _conflict_warnings(record)
    assert model.cfg.tie_embeddings and _max_diff(model, ref) <= ABS_TOL


# --- two weight sources in one directory ---------------------------------------------------------------------------

def test_single_file_wins_over_a_stale_index_as_in_transformers(tmp_path):
    """model.safetensors beside an index of other shards: transformers reads model.safetensors; so does caujax,
    saying the index is ignored. An export into a directory that held a sharded one leaves no stale index."""
    weights = parity_weights("qwen2")
    stale = {k: (v + 1.0).astype(np.float32) for k, v in weights.items()}
    path = _write(tmp_path, "qwen2", stale, tie=True, shards=2)
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    _, ref = _reference(path)
    with pytest.warns(UserWarning, match=r"both model\.safetensors and model\.safetensors\.index\.json"):
        model, _ = load_pretrained(path)
    assert _max_diff(model, ref) <= ABS_TOL

    out = tmp_path / "export"
    save_pretrained(model, None, out, max_shard_bytes=4096)          # sharded
    assert (out / "model.safetensors.index.json").exists()
    save_pretrained(model, None, out)                                 # then one file, same directory
    assert sorted(p.name for p in out.glob("model*")) == ["model.safetensors"]


def test_a_tensor_in_two_files_without_an_index_is_refused(tmp_path):
    weights = parity_weights("qwen2")
    path = _write(tmp_path, "qwen2", weights, tie=True, shards=2)
    (path / "model.safetensors.index.json").unlink()
    save_file({"model.norm.weight": weights["model.norm.weight"] * 2}, path / "extra.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor model\.norm\.weight is stored in both "
                                              r"(extra|model-0000\d-of-00002)\.safetensors and "):
        load_pretrained(path)


# --- special-token ids declared twice --------------------------------------------------------------------------------

def test_bos_declared_differently_by_config_and_tokenizer_warns_and_uses_the_tokenizers(tmp_path):
    """config.json says bos 5, the tokenizer's <bos> is 1: the tokenizer writes the prompts, so its id is the
    model's, and the warning names both declarations."""
    path = make_tiny_checkpoint_with_tokenizer(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "bos_token_id": 5}))
    (path / "generation_config.json").unlink()
    with pytest.warns(UserWarning, match=r"bos_token_id is declared differently \(1 in the tokenizer, 5 in "
                                         r"config\.json\); using 1 from the tokenizer"):
        model, tokenizer = load_pretrained(path)
    assert model.cfg.bos_token_id == tokenizer.bos_token_id == 1


def test_pad_declared_differently_by_generation_config_and_config_warns(tmp_path):
    """Variant without a tokenizer: generation_config.json (what transformers' generate reads) over config.json."""
    path = _write(tmp_path, "qwen2", parity_weights("qwen2"), tie=True)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "pad_token_id": 3}))
    (path / "generation_config.json").write_text(json.dumps({"pad_token_id": 4, "eos_token_id": 2}))
    with pytest.warns(UserWarning, match=r"pad_token_id is declared differently \(4 in generation_config\.json, "
                                         r"3 in config\.json\)"):
        model, _ = load_pretrained(path)
    assert model.cfg.pad_token_id == 4 and model.cfg.eos_token_ids == (2,)


# --- GGUF metadata against its tensors ---------------------------------------------------------------------------

@pytest.mark.parametrize("override,message", [
    (dict(vocab_size=120), r"qwen2\.vocab_size says 120 tokens but token_embd\.weight has 128 rows"),
    (dict(value_length=16), r"qwen2\.attention\.value_length 16 differs from key_length 8"),
])
def test_gguf_metadata_that_contradicts_its_tensors_is_refused(tmp_path, override, message):
    from test_gguf import TINY as GGUF_TINY, random_decoder, write_gguf
    from caujax.models.gguf import load_gguf

    path = write_gguf(tmp_path / "c.gguf", random_decoder(GGUF_TINY["qwen2"]), **override)
    with pytest.raises(CheckpointError, match=rf"c\.gguf: {message}"):
        load_gguf(path)


def test_gguf_token_list_longer_than_the_embedding_is_refused(tmp_path):
    """128 listed tokens, 120 embedding rows (and a vocab_size key that agrees with the rows): token ids 120..127
    have no embedding. llama.cpp refuses such a file; so does caujax, naming both counts."""
    from flax import nnx

    from test_gguf import TINY as GGUF_TINY, random_decoder, write_gguf
    from caujax.models.gguf import load_gguf

    graphdef, state = nnx.split(random_decoder(GGUF_TINY["qwen2"]))
    flat = dict(nnx.to_flat_state(state))
    flat[("embed",)] = flat[("embed",)].replace(flat[("embed",)][...][:120])
    path = write_gguf(tmp_path / "t.gguf", nnx.merge(graphdef, nnx.from_flat_state(flat)), vocab_size=120)
    with pytest.raises(CheckpointError, match=r"t\.gguf: tokenizer\.ggml\.tokens says 128 tokens but "
                                              r"token_embd\.weight has 120 rows"):
        load_gguf(path)


# --- RoPE types the decoder lacks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rope", [
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192},
    {"rope_type": "dynamic", "factor": 2.0},
])
def test_unsupported_rope_type_is_refused_naming_config_json(tmp_path, rope):
    path = _write(tmp_path, "llama", parity_weights("llama"), tie=False)
    config = json.loads((path / "config.json").read_text())
    config["rope_parameters"] = {**rope, "rope_theta": 10_000.0}
    (path / "config.json").write_text(json.dumps(config))
    expected = rf"{re.escape(str(path / 'config.json'))}: rope_type '{rope['rope_type']}' is not supported"
    with pytest.raises(CheckpointError, match=expected + r" \(supported: default, linear, llama3\)"):
        load_pretrained(path)


def test_unsupported_gguf_rope_scaling_is_refused_naming_the_file(tmp_path):
    import gguf

    from test_gguf import TINY as GGUF_TINY, random_decoder, write_gguf
    from caujax.models.gguf import load_gguf

    path = write_gguf(tmp_path / "long.gguf", random_decoder(GGUF_TINY["llama"]),
                      rope_scaling_type=gguf.RopeScalingType.YARN, rope_scaling_factor=4.0)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: RoPE scaling 'yarn' is not supported"):
        load_gguf(path)
