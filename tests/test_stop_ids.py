"""Stop tokens from every place a checkpoint declares them (issue 13, kind 1): config.json (top level and
text_config), generation_config.json, the tokenizer, and a GGUF file's eos / eot / eom ids. The model config holds
their union, the sampler stops on it, and export keeps it."""
from __future__ import annotations

import json
import time
import types

import numpy as np
import pytest
from flax import nnx

from caujax.models import Decoder, ModelConfig, load_pretrained, save_pretrained
from caujax.models.config import stop_ids
from caujax.sampling import SamplingParams, sample_ids
from caujax.sampling.sampler import end_ids
from model_fixtures import make_tiny_checkpoint_with_tokenizer, strong_weights

PROMPT = [5, 9, 14, 3, 27, 8]
GREEDY = SamplingParams(temperature=0, max_new_tokens=48)
# The CauGym paper's protocol (DATA.md 1.7): 5 samples, temperature 0.6, top-p 0.95, 8,192 new tokens.
PAPER = SamplingParams(n=5, temperature=0.6, top_p=0.95, max_new_tokens=8192)


def _swap_tokens(model: Decoder, a: int, b: int) -> Decoder:
    """The same network with token ids a and b exchanged (embedding rows, head columns): on the relabelled text it
    computes exactly what `model` computes on the original."""
    graphdef, state = nnx.split(model)
    flat = dict(nnx.to_flat_state(state))
    perm = np.arange(model.cfg.vocab_size)
    perm[[a, b]] = [b, a]
    flat[("embed",)] = flat[("embed",)].replace(flat[("embed",)][...][perm])
    if ("lm_head",) in flat:
        flat[("lm_head",)] = flat[("lm_head",)].replace(flat[("lm_head",)][...][:, perm])
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def _stopping_at(model: Decoder, stop: int, avoid=(), min_step: int = 3):
    """(model', prompt', k): `model` relabelled so that its greedy continuation of prompt' first produces `stop` at
    step k >= min_step, with no id of `avoid` before it (k past the first steps shows decoding ran, then ended)."""
    seq = sample_ids(model, [PROMPT], GREEDY).tokens[0].tolist()
    k = next(k for k in range(min_step, len(seq)) if seq[k] not in seq[:k] and seq[k] not in avoid
             and not set(avoid) & set(seq[:k]))
    swap = {seq[k]: stop, stop: seq[k]}
    model = _swap_tokens(model, seq[k], stop)
    prompt = [swap.get(t, t) for t in PROMPT]
    relabelled = sample_ids(model, [prompt], GREEDY).tokens[0].tolist()
    assert relabelled[k] == stop and stop not in relabelled[:k]     # the fixture does what it says
    return model, prompt, k


def _random(cfg: ModelConfig, seed: int = 0) -> Decoder:
    """Weights large enough that greedy decoding has clear winners (the same tokens in caujax and torch)."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    return nnx.merge(graphdef, strong_weights(cfg, seed))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """The issue's example: a tiny Llama directory whose config.json says eos_token_id 1 while
    generation_config.json says [1, 2] (as the first Llama-3-Instruct release did); greedy decoding reaches 2 at
    step k. Returns (path, prompt, k)."""
    path = tmp_path_factory.mktemp("llama3_like")
    cfg = ModelConfig.tiny("llama", tie_embeddings=False, eos_token_ids=(1,))
    model, prompt, k = _stopping_at(_random(cfg), stop=2, avoid=(1,))
    save_pretrained(model, None, path)
    assert json.loads((path / "config.json").read_text())["eos_token_id"] == 1
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 2]}))
    return path, prompt, k


def test_stop_ids_is_the_union_of_every_declaration():
    assert stop_ids(1, [1, 2], None, (7,), np.int64(5)) == (1, 2, 5, 7)
    assert stop_ids(None, []) == ()
    for bad in ("<eos>", -1, True, 2.0):
        with pytest.raises(ValueError, match="not a token id"):
            stop_ids(1, [bad])


def test_generation_config_stop_id_ends_paper_protocol_decoding_like_transformers(llama_dir):
    """Must-show: under the paper protocol's 8,192 new tokens, a stop id declared only in generation_config.json
    ends decoding there (greedy here, so the step is known), at the same token as transformers' generate."""
    import torch
    import transformers

    path, prompt, k = llama_dir
    model, tokenizer = load_pretrained(path)
    assert model.cfg.eos_token_ids == (1, 2)
    start = time.perf_counter()
    out = sample_ids(model, [prompt], SamplingParams(temperature=0, max_new_tokens=PAPER.max_new_tokens),
                     eos_ids=end_ids(model.cfg, tokenizer))
    seconds = time.perf_counter() - start
    print(f"stopped after {out.lengths[0]} of {PAPER.max_new_tokens} tokens in {seconds:.1f} s (compile included)")
    assert out.done[0] and out.lengths[0] == k + 1 and out.tokens[0, k] == 2
    assert (out.tokens[0, k + 1:] == 0).all()
    reference = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert reference.generation_config.eos_token_id == [1, 2]
    with torch.no_grad():
        hf = reference.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                do_sample=False, max_new_tokens=64, pad_token_id=0)
    assert hf[0, len(prompt):].tolist() == out.tokens[0, : k + 1].tolist()


def test_paper_protocol_sampling_stops_on_a_generation_config_id(tmp_path):
    """Variant with the whole paper protocol (n=5, temperature 0.6, top-p 0.95, 8,192 tokens): a 16-token model
    whose config.json stops on 1 and generation_config.json on [1, 2]. Every row ends at its first 1 or 2, and
    some row at a 2 (which, read from config.json alone, would not stop it: the row would run on past it)."""
    cfg = ModelConfig.tiny("llama", vocab_size=16, eos_token_ids=(1,))
    save_pretrained(Decoder(cfg, rngs=nnx.Rngs(3)), None, tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 2]}))
    model, tokenizer = load_pretrained(tmp_path)
    prompts = [[5, 9, 14, 3], [7, 3], [11, 12, 13], [4, 6, 8, 10, 15]]      # 20 rows: some row surely ends in 2
    out = sample_ids(model, prompts, PAPER, eos_ids=end_ids(model.cfg, tokenizer))
    ends = []
    for row, length in zip(out.tokens.tolist(), out.lengths.tolist()):
        assert 0 < length < PAPER.max_new_tokens
        assert row[length - 1] in (1, 2) and not {1, 2} & set(row[: length - 1])
        ends.append(row[length - 1])
    assert out.done.all() and 2 in ends, ends


def test_nested_text_config_and_tokenizer_eos_join_the_union(tmp_path):
    """Variant: a multimodal Gemma 3 config.json (eos 7 at the top, [1, 5] in text_config) and no
    generation_config.json: the union of both levels; a tokenizer's eos joins it (byte tokenizer: <|end|> = 2)."""
    save_pretrained(Decoder(ModelConfig.tiny("gemma3", eos_token_ids=(1,)), rngs=nnx.Rngs(0)), None, tmp_path)
    text = {**json.loads((tmp_path / "config.json").read_text()), "eos_token_id": [1, 5]}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3", "eos_token_id": 7, "text_config": text,
                                                      "architectures": ["Gemma3ForConditionalGeneration"]}))
    (tmp_path / "generation_config.json").unlink()
    model, _ = load_pretrained(tmp_path)
    assert model.cfg.eos_token_ids == (1, 5, 7)

    path = make_tiny_checkpoint_with_tokenizer(tmp_path / "with_tokenizer")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "eos_token_id": 9}))
    (path / "generation_config.json").unlink()
    model, tokenizer = load_pretrained(path)
    assert tokenizer.eos_token_id == 2 and model.cfg.eos_token_ids == (2, 9)


def test_export_keeps_every_stop_id(llama_dir, tmp_path):
    """A model fine-tuned from the example stops where its base did: save_pretrained writes the union to
    config.json and generation_config.json; caujax and transformers read it back."""
    import transformers

    model, tokenizer = load_pretrained(llama_dir[0])
    save_pretrained(model, tokenizer, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["eos_token_id"] == [1, 2]
    assert transformers.GenerationConfig.from_pretrained(tmp_path).eos_token_id == [1, 2]
    again, _ = load_pretrained(tmp_path)
    assert again.cfg.eos_token_ids == (1, 2)


def test_end_ids_adds_the_tokenizers_eos():
    cfg = ModelConfig.tiny("qwen2", eos_token_ids=(1, 2))
    assert end_ids(cfg, types.SimpleNamespace(eos_token_id=7)) == (1, 2, 7)
    assert end_ids(cfg, types.SimpleNamespace(eos_token_id=None)) == (1, 2)
    assert end_ids(cfg, None) == (1, 2)


# --- GGUF: tokenizer.ggml.eos_token_id, eot_token_id, eom_token_id -----------------------------------------------

def test_gguf_eot_id_ends_decoding(tmp_path):
    """The issue's example: a GGUF with eos_token_id 1 and eot_token_id 5 whose turns end in 5 stops on 5."""
    from test_gguf import TINY, random_decoder, write_gguf
    from caujax.models.gguf import load_gguf

    source, prompt, k = _stopping_at(random_decoder(TINY["qwen2"], seed=1), stop=5, avoid=(1,))
    model, tokenizer = load_gguf(write_gguf(tmp_path / "chat.gguf", source, eot_token_id=5))
    assert model.cfg.eos_token_ids == (1, 5) and tokenizer.eos_token_id == 1
    out = sample_ids(model, [prompt], SamplingParams(temperature=0, max_new_tokens=PAPER.max_new_tokens),
                     eos_ids=end_ids(model.cfg, tokenizer))
    assert out.done[0] and out.lengths[0] == k + 1 and out.tokens[0, k] == 5


def test_gguf_eom_id_joins_and_export_keeps_it(tmp_path):
    """Variant: Llama 3.1's eom (end of message, for tool calls) joins too, and an HF export of the GGUF model keeps
    all three in config.json and generation_config.json."""
    from test_gguf import TINY, random_decoder, write_gguf
    from caujax.models.gguf import load_gguf

    path = write_gguf(tmp_path / "tools.gguf", random_decoder(TINY["llama"]), eot_token_id=5, eom_token_id=6)
    model, tokenizer = load_gguf(path)
    assert model.cfg.eos_token_ids == (1, 5, 6)
    save_pretrained(model, tokenizer, tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "generation_config.json").read_text())["eos_token_id"] == [1, 5, 6]
    assert load_pretrained(tmp_path / "hf")[0].cfg.eos_token_ids == (1, 5, 6)


def test_gguf_turn_end_named_only_as_a_token_joins(tmp_path, monkeypatch):
    """Variant: a file that declares only eos but lists a chat turn end (Qwen's <|im_end|>) among its tokens:
    llama.cpp ends generation on it (its end-of-generation texts), and so does caujax."""
    import test_gguf
    from caujax.models.gguf import load_gguf

    tokens = test_gguf.TOKENS[:-1] + ["<|im_end|>"]
    monkeypatch.setattr(test_gguf, "TOKENS", tokens)
    path = test_gguf.write_gguf(tmp_path / "qwen.gguf", test_gguf.random_decoder(test_gguf.TINY["qwen2"]))
    model, _ = load_gguf(path)
    assert model.cfg.eos_token_ids == (1, len(tokens) - 1)
