"""config.json and generation_config.json <-> ModelConfig, and the token ids a checkpoint directory declares.

A Hugging Face checkpoint states its special-token ids in up to four places (config.json, its nested text_config,
generation_config.json, the tokenizer). `declared_ids` reads all of them: end-of-generation ids are their union,
and a bos or pad id declared two different ways is resolved by a stated rule with a warning, never silently.
"""
from __future__ import annotations

import json
import pathlib
import warnings

from caujax.models.config import FAMILY_FLAGS, ModelConfig, RopeScaling, stop_ids

SUPPORTED = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3", "gemma3": "gemma3"}
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                 "gemma3": "Gemma3ForCausalLM"}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the decoder, or contradicts itself; the message names the file and tensor."""


def config_from_hf(hf, dtype: str | None = None, source: str | None = None) -> ModelConfig:
    """ModelConfig from a transformers config object (v5: RoPE lives in `rope_parameters`).

    eos_token_ids is the union of the top-level and the text config's eos_token_id (a multimodal Gemma 3 config
    nests the decoder's); `declared_ids` adds generation_config.json and the tokenizer. `source` (the config.json
    path, or the GGUF file the config was read from) starts every error message. Raises CheckpointError for a model
    type, activation, bias or RoPE type the decoder does not implement."""
    where = f"{source}: " if source else ""
    model_type = hf.model_type
    if model_type not in SUPPORTED:
        raise CheckpointError(f"{where}unsupported model_type {model_type!r}; supported: {sorted(SUPPORTED)}")
    top = hf
    if model_type == "gemma3":            # multimodal wrapper: the decoder is its text model
        hf = hf.get_text_config()
    family = SUPPORTED[model_type]
    act = getattr(hf, "hidden_activation", None) or getattr(hf, "hidden_act", None)
    expected_act = "gelu_pytorch_tanh" if family == "gemma3" else "silu"
    if act != expected_act:
        raise CheckpointError(f"{where}{model_type}: activation {act!r} is not supported (expected {expected_act!r})")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(hf, flag, False) and family != "qwen2":
            raise CheckpointError(f"{where}{model_type}: {flag}=True is not supported by the decoder")
    rope = hf.rope_parameters or {}
    global_rope = rope.get("full_attention", rope)
    local_rope = rope.get("sliding_attention", global_rope)
    declared_types = getattr(hf, "layer_types", None) or ()
    layer_types = tuple("local" if t == "sliding_attention" else "global" for t in declared_types)
    fields = dict(FAMILY_FLAGS[family])
    fields.update(
        family=family, vocab_size=hf.vocab_size, embed_dim=hf.hidden_size, num_layers=hf.num_hidden_layers,
        num_heads=hf.num_attention_heads, num_kv_heads=hf.num_key_value_heads,
        head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
        mlp_dim=hf.intermediate_size, norm_eps=hf.rms_norm_eps, tie_embeddings=bool(hf.tie_word_embeddings),
        rope_theta=float(global_rope.get("rope_theta", 10_000.0)), rope_scaling=_rope_scaling(global_rope, where),
        rope_local_theta=float(local_rope.get("rope_theta", global_rope.get("rope_theta", 10_000.0))),
        layer_types=layer_types if "local" in layer_types else (),
        sliding_window=getattr(hf, "sliding_window", None) if "local" in layer_types else None,
        max_position=hf.max_position_embeddings, bos_token_id=hf.bos_token_id, pad_token_id=hf.pad_token_id,
        eos_token_ids=stop_ids(getattr(top, "eos_token_id", None), getattr(hf, "eos_token_id", None)),
        param_dtype=dtype or "float32", compute_dtype=dtype or "float32",
    )
    if family == "gemma3":
        fields.update(query_pre_attn_scalar=float(hf.query_pre_attn_scalar),
                      final_logit_softcap=hf.final_logit_softcapping, attn_logit_softcap=hf.attn_logit_softcapping)
    return ModelConfig(**fields)


def _rope_scaling(rope: dict, where: str = "") -> RopeScaling | None:
    kind = rope.get("rope_type", "default")
    if kind == "default":
        return None
    if kind == "linear":
        return RopeScaling("linear", float(rope["factor"]))
    if kind == "llama3":
        return RopeScaling("llama3", float(rope["factor"]), float(rope["low_freq_factor"]),
                           float(rope["high_freq_factor"]), int(rope["original_max_position_embeddings"]))
    raise CheckpointError(f"{where}rope_type {kind!r} is not supported (supported: default, linear, llama3)")


def config_to_hf(cfg: ModelConfig):
    """The transformers config object that describes the same model (for export)."""
    import transformers

    def rope(theta, scaling):
        params = {"rope_type": "default", "rope_theta": theta}
        if scaling is not None and scaling.kind == "linear":
            params.update(rope_type="linear", factor=scaling.factor)
        elif scaling is not None:
            params.update(rope_type="llama3", factor=scaling.factor, low_freq_factor=scaling.low_freq_factor,
                          high_freq_factor=scaling.high_freq_factor,
                          original_max_position_embeddings=scaling.original_max_position)
        return params

    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.embed_dim, intermediate_size=cfg.mlp_dim,
                  num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                  num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps,
                  tie_word_embeddings=cfg.tie_embeddings, max_position_embeddings=cfg.max_position,
                  bos_token_id=cfg.bos_token_id, pad_token_id=cfg.pad_token_id, eos_token_id=_eos_field(cfg),
                  architectures=[ARCHITECTURES[cfg.family]], dtype=cfg.param_dtype)
    layer_types = [("sliding_attention" if cfg.layer_type(i) == "local" else "full_attention")
                   for i in range(cfg.num_layers)]
    if cfg.family == "gemma3":
        return transformers.Gemma3TextConfig(
            **common, query_pre_attn_scalar=_int_if_whole(cfg.query_pre_attn_scalar), sliding_window=cfg.sliding_window,
            layer_types=layer_types, final_logit_softcapping=cfg.final_logit_softcap,
            attn_logit_softcapping=cfg.attn_logit_softcap,
            rope_parameters={"full_attention": rope(cfg.rope_theta, cfg.rope_scaling),
                             "sliding_attention": rope(cfg.rope_local_theta or cfg.rope_theta, None)})
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
           "qwen3": transformers.Qwen3Config}[cfg.family]
    extra = {"hidden_act": "silu", "rope_parameters": rope(cfg.rope_theta, cfg.rope_scaling)}
    if cfg.family != "llama" and cfg.sliding_window:
        extra.update(use_sliding_window=True, sliding_window=cfg.sliding_window, layer_types=layer_types)
    return cls(**common, **extra)


def generation_config_to_hf(cfg: ModelConfig):
    """The generation_config.json of an export: every stop id, so transformers' generate (which reads this file
    before config.json) and a caujax re-load stop where the loaded model did. Only ids: sampling settings are the
    caller's (SamplingParams), not the checkpoint's."""
    import transformers

    return transformers.GenerationConfig(bos_token_id=cfg.bos_token_id, pad_token_id=cfg.pad_token_id,
                                         eos_token_id=_eos_field(cfg))


def _eos_field(cfg: ModelConfig):
    """eos_token_id as transformers writes it: one int, a list for several, None for none."""
    ids = list(cfg.eos_token_ids)
    return ids if len(ids) > 1 else (ids[0] if ids else None)


def _int_if_whole(x):
    """transformers' strict config fields want an int for Gemma's query_pre_attn_scalar (256, not 256.0)."""
    return int(x) if x is not None and float(x).is_integer() else x


def _read_json(path: pathlib.Path) -> dict:
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not readable as JSON ({err})") from err
    if not isinstance(out, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(out).__name__}")
    return out


def declared_ids(cfg: ModelConfig, path, tokenizer) -> ModelConfig:
    """cfg (from config_from_hf on the directory's config.json) with the special-token ids of the checkpoint
    directory `path`, from every place that declares them.

    eos_token_ids: the union (config.stop_ids) of config.json's eos_token_id as transformers reads it (class defaults
    included, text config included), the raw file's top-level and text_config values (a multimodal config object may
    drop a top-level id), generation_config.json's (what transformers' generate stops on) and the tokenizer's.
    bos_token_id, pad_token_id: one id each, the first declared of the tokenizer (it writes the ids the model
    reads), generation_config.json (transformers' generate reads it before config.json) and config.json; two
    different declared values give a warning naming each source.
    Raises CheckpointError when a JSON file is unreadable or declares an id that is not a token id."""
    path = pathlib.Path(path)
    raw = _read_json(path / "config.json")
    text = raw.get("text_config") if isinstance(raw.get("text_config"), dict) else {}
    gen_path = path / "generation_config.json"
    gen = _read_json(gen_path) if gen_path.exists() else {}
    tok = {} if tokenizer is None else {k: getattr(tokenizer, k, None)
                                        for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    try:
        eos = stop_ids(cfg.eos_token_ids, raw.get("eos_token_id"), text.get("eos_token_id"), gen.get("eos_token_id"),
                       tok.get("eos_token_id"))
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    resolved = {}
    for key in ("bos_token_id", "pad_token_id"):
        # Highest precedence first.
        declared = [(name, v) for name, v in (("the tokenizer", tok.get(key)), ("generation_config.json", gen.get(key)),
                                              ("config.json", getattr(cfg, key))) if v is not None]
        if any(isinstance(v, bool) or not isinstance(v, int) for _, v in declared):
            raise CheckpointError(f"{path}: {key} must be one token id; declared {declared}")
        resolved[key] = declared[0][1] if declared else None
        if len({v for _, v in declared}) > 1:
            listed = ", ".join(f"{v} in {name}" for name, v in declared)
            warnings.warn(f"{path}: {key} is declared differently ({listed}); using {declared[0][1]} from "
                          f"{declared[0][0]}", stacklevel=3)
    return cfg.replace(eos_token_ids=eos, **resolved)
