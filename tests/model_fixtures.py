"""Random tiny Hugging Face checkpoints of each family, made with transformers + torch, shared by the model tests."""
from __future__ import annotations

import pathlib

import numpy as np

from caujax.models import ModelConfig, RopeScaling
from caujax.models.hf import config_to_hf

FAMILIES = ("llama", "qwen2", "qwen3", "gemma3")

# Each family exercises its own flags; llama also gets Llama 3.1 rope scaling with a short original context so
# the scaled band actually moves, gemma3 gets a window shorter than the test sequence and linear global scaling.
TINY = {
    "llama": ModelConfig.tiny("llama", tie_embeddings=False,
                              rope_scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, original_max_position=16)),
    "qwen2": ModelConfig.tiny("qwen2"),
    "qwen3": ModelConfig.tiny("qwen3", tie_embeddings=False),
    "gemma3": ModelConfig.tiny("gemma3", rope_scaling=RopeScaling("linear", 2.0), final_logit_softcap=3.0,
                               layer_types=("local", "global", "local"), num_layers=3),
}


def make_hf_checkpoint(family: str, path: pathlib.Path, seed: int = 0):
    """Save a torch model with random weights (std 0.1, biases and norms included) and return it in eval mode."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config_to_hf(TINY[family])).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    model.save_pretrained(path)
    return model


def padded_batch(vocab: int = 128, seed: int = 0):
    """Row 0 right-padded, row 1 left-padded, row 2 full; positions count real tokens, as in caujax."""
    T = 11
    tokens = np.random.RandomState(seed).randint(1, vocab, (3, T))
    mask = np.ones((3, T), np.int64)
    mask[0, 7:] = 0
    mask[1, :4] = 0
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return tokens, mask, positions


def torch_logits(model, tokens, mask, positions) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(positions))
    return out.logits.float().numpy()


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges (every byte one token) plus specials and a chat template: covers
    any text, needs no training, and round-trips through save_pretrained / AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "<bos>", "<|end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<|end|>")
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<|end|>{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    return tok


def make_tiny_checkpoint_with_tokenizer(path: pathlib.Path, family: str = "qwen2", seed: int = 0):
    """A random tiny caujax model whose vocabulary is the byte tokenizer's, saved as a Hugging Face directory."""
    from flax import nnx

    from caujax.models import Decoder, save_pretrained

    tok = byte_tokenizer()
    cfg = TINY[family].replace(vocab_size=len(tok), eos_token_ids=(tok.eos_token_id,), pad_token_id=0,
                               bos_token_id=tok.bos_token_id)
    save_pretrained(Decoder(cfg, rngs=nnx.Rngs(seed)), tok, path)
    return path
