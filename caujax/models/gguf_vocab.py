"""A GGUF file's vocabulary: its tokenizer (through transformers' GGUF converter) and its end-of-generation ids.

The functions take gguf._File (a GGUFReader with the file name for messages).
"""
from __future__ import annotations

from caujax.models.config import stop_ids
from caujax.models.hf_config import CheckpointError

# Token texts llama.cpp ends generation on whatever the metadata says (llama_vocab::impl::load, special_eog_ids):
# converters write one eos_token_id, and a chat model's turn end (Gemma's <end_of_turn>, Qwen's <|im_end|>, Llama
# 3's <|eot_id|>) often only as a token. llama.cpp's fill-in-the-middle ends (<|fim_pad|>, ...) and gpt-oss's
# <|return|>/<|call|> are left out: caujax has no infill mode and no gpt-oss.
EOG_TEXTS = frozenset({"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
                       "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>"})

# Gemma's chat format (Gemma 3 model card): a system prompt is folded into the first user turn, the assistant role
# is called "model", every turn ends with <end_of_turn>. The GGUF usually carries no template, so this is the
# fallback for gemma3 files; a template in the file wins.
_GEMMA_CHAT_TEMPLATE = r"""{{ bos_token }}
{%- if messages and messages[0]['role'] == 'system' -%}
  {%- set prefix = messages[0]['content'] ~ '\n\n' -%}
  {%- set turns = messages[1:] -%}
{%- else -%}
  {%- set prefix = '' -%}
  {%- set turns = messages -%}
{%- endif -%}
{%- for m in turns -%}
  {%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) -%}
    {{ raise_exception('Gemma chats must alternate user/assistant turns, starting with the user') }}
  {%- endif -%}
  {{ '<start_of_turn>' ~ ('model' if m['role'] == 'assistant' else m['role']) ~ '\n'
     ~ (prefix if loop.first else '') ~ (m['content'] | trim) ~ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"""


def gguf_stop_ids(f) -> tuple[int, ...]:
    """Every end-of-generation id of the file, as llama.cpp collects them: tokenizer.ggml.eos_token_id,
    eot_token_id and eom_token_id, and every token whose text is in EOG_TEXTS; their union (config.stop_ids, the
    function the Hugging Face loader uses too). Raises CheckpointError on an id that is not a token id."""
    tokens = f.meta("tokenizer.ggml.tokens", [])
    by_text = [i for i, text in enumerate(tokens) if text in EOG_TEXTS]
    try:
        return stop_ids(*(f.meta(f"tokenizer.ggml.{kind}_token_id", None) for kind in ("eos", "eot", "eom")), by_text)
    except ValueError as err:
        raise CheckpointError(f"{f.source}: {err}") from err


# The class AutoTokenizer picks for each model_type (TokenizersBackend when it has none, as for llama).
_TOKENIZER_CLASS = {"gemma3": "GemmaTokenizer", "llama": "TokenizersBackend", "qwen2": "Qwen2Tokenizer",
                    "qwen3": "Qwen2Tokenizer"}


def tokenizer_from_gguf(f):
    """The tokenizer the metadata of `f` (gguf._File) describes, built by transformers' GGUF converter, with a chat
    template. Raises CheckpointError when the file has no tokenizer."""
    import transformers
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer

    arch = f.meta("general.architecture")
    groups = {group: {name: f.meta(f"tokenizer.{key}") for key, name in keys.items()
                      if f"tokenizer.{key}" in f.reader.fields}
              for group, keys in GGUF_TOKENIZER_MAPPING.items()}
    vocab, options = groups["tokenizer"], groups["tokenizer_config"]
    if "tokens" not in vocab:
        raise CheckpointError(f"{f.source}: GGUF metadata has no tokenizer (tokenizer.ggml.tokens)")
    if vocab.get("tokenizer_type") == "llama":
        options.setdefault("add_bos_token", True)    # llama.cpp adds BOS to a sentencepiece vocabulary by default
    for name in ("bos", "eos", "unk", "pad"):
        token_id = vocab.get(f"{name}_token_id")
        options[f"{name}_token"] = vocab["tokens"][token_id] if token_id is not None else None
    backend, extra = convert_gguf_tokenizer(arch, vocab)
    options.update(extra)
    if arch == "gemma3":
        options.setdefault("chat_template", _GEMMA_CHAT_TEMPLATE)
    return getattr(transformers, _TOKENIZER_CLASS[arch])(tokenizer_object=backend, **options)
