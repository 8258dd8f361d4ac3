"""ModelConfig: every architectural difference between Llama, Qwen2/2.5, Qwen3 and Gemma 3 as a typed field."""
from __future__ import annotations

import dataclasses
import operator
from typing import Literal, get_args

Family = Literal["llama", "qwen2", "qwen3", "gemma3"]
LayerType = Literal["global", "local"]
DType = Literal["float32", "bfloat16"]
AttentionImpl = Literal["auto", "plain", "blockwise", "dot_product", "splash"]   # models/attention.py
IMPLS = get_args(AttentionImpl)


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling of the global layers. "llama3" is Llama 3.1's smooth interpolation
    (Meta's llama3.1 reference, `apply_scaling`); "linear" divides every frequency by `factor` (Gemma 3 4B+)."""

    kind: Literal["llama3", "linear"]
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192


# Logical projection names, and the Hugging Face module each one is (PEFT's target_modules names).
TARGETS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
           "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Adapter hyperparameters. Defaults follow PEFT's LoraConfig (r=8, lora_alpha=8, lora_dropout=0) except the
    rank, whose 0 means "no adapters: full fine-tuning"; targets default to every projection of every layer (PEFT's
    "all-linear" without the output layer, as in QLoRA, Dettmers et al. 2023)."""

    rank: int = 0                       # r, 1-64 typical; 0 = no adapters (full fine-tuning)
    alpha: float | None = None          # the adapter's output is scaled by alpha / rank; None = rank (scale 1)
    dropout: float = 0.0                # dropout on the adapter's input during training (PEFT lora_dropout)
    targets: tuple[str, ...] = tuple(TARGETS)   # by logical name: q, k, v, o, gate, up, down
    export: Literal["merged", "peft"] = "merged"   # end-of-run export: a merged HF directory, or a PEFT adapter

    def __post_init__(self):
        if self.rank < 0:
            raise ValueError(f"lora.rank={self.rank} must be >= 0 (0 = full fine-tuning)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout={self.dropout} must be in [0, 1)")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or (self.rank and not self.targets):
            raise ValueError(f"lora.targets={self.targets!r}: expected a non-empty subset of {tuple(TARGETS)} "
                             f"(q/k/v/o are the attention projections, gate/up/down the MLP's)")
        if self.alpha is not None and self.alpha <= 0:
            raise ValueError(f"lora.alpha={self.alpha} must be > 0")
        if self.export not in ("merged", "peft"):
            raise ValueError(f"lora.export={self.export!r}; expected 'merged' or 'peft'")

    @property
    def scale(self) -> float:
        return (self.alpha if self.alpha is not None else self.rank) / self.rank


RematPolicy = Literal["none", "full", "save_dots", "save_attention"]
# What a decoder block keeps for the backward pass; the rest is recomputed there (jax.checkpoint policies).
REMAT_POLICIES = {
    "none": "keep every activation (fastest, most memory)",
    "full": "keep only the block's input; recompute the whole block (least memory, ~1/3 more FLOPs)",
    "save_dots": "keep the projections' outputs (matmuls without batch dimensions); recompute norms, "
                 "activations and attention (jax.checkpoint_policies.dots_with_no_batch_dims_saveable)",
    "save_attention": "keep each block's attention output (checkpoint_name 'attn_out'); recompute the rest",
}


def remat_policy(value) -> str:
    """A REMAT_POLICIES key; the former booleans still read (True = "full", False = "none"). ValueError otherwise."""
    if isinstance(value, bool):
        return "full" if value else "none"
    if value not in REMAT_POLICIES:
        raise ValueError(f"remat={value!r}; expected one of {', '.join(map(repr, REMAT_POLICIES))}")
    return value


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder hyperparameters. Letters refer to the axis glossary at the top of decoder.py."""

    family: Family                      # only used to name tensors on import/export; layers never test it
    vocab_size: int                     # V
    embed_dim: int                      # D
    num_layers: int                     # L
    num_heads: int                      # N query heads
    num_kv_heads: int                   # K key/value heads (GQA when K < N)
    head_dim: int                       # H
    mlp_dim: int                        # F
    activation: Literal["silu", "gelu_tanh"] = "silu"   # SwiGLU (Llama/Qwen) or GeGLU with tanh gelu (Gemma)
    qkv_bias: bool = False              # Qwen2/2.5: bias on q, k and v projections
    qk_norm: bool = False               # Qwen3/Gemma3: RMSNorm over H on queries and keys before RoPE
    sandwich_norms: bool = False        # Gemma3: extra RMSNorm on the attention and MLP outputs before the residual
    norm_plus_one: bool = False         # Gemma: RMSNorm scales by (1 + w), weights stored centred on 0
    norm_eps: float = 1e-6
    embed_scale: bool = False           # Gemma: token embeddings multiplied by sqrt(D)
    query_pre_attn_scalar: float | None = None   # Gemma3: scores scaled by this**-0.5 instead of H**-0.5
    rope_theta: float = 10_000.0        # base of the global layers
    rope_local_theta: float | None = None         # base of sliding-window layers (Gemma3 10k); None = rope_theta
    rope_scaling: RopeScaling | None = None
    layer_types: tuple[LayerType, ...] = ()       # per layer; () means all global
    sliding_window: int | None = None   # local layers see keys with q_pos - k_pos < sliding_window
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    tie_embeddings: bool = False
    param_dtype: DType = "float32"
    compute_dtype: DType = "float32"
    attention: AttentionImpl = "auto"   # kernel (models/attention.py);
    #                                     auto: blockwise, and for a decoded token the filled columns of the
    #                                     sampler's cache (decode_attention.py; plain for other caches)
    attention_block: int = 256          # query/key block of the blockwise kernel (decoding: at most 128)
    remat: RematPolicy = "none"         # training: what each block keeps for the backward pass (REMAT_POLICIES)
    lora: LoRAConfig | None = None      # low-rank adapters on the projections (models/lora.py); None = none
    scan_layers: bool = True            # one compiled block applied by lax.scan over the stacked [L, ...] layers;
    #                                     False: a Python loop over the same parameters (L compiled blocks; tests)
    max_position: int = 32_768          # only recorded for export; the decoder itself has no position table
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()   # every id that ends a generation: the union of all the checkpoint declares
    #                                     (stop_ids below; hf_config.declared_ids, gguf_vocab.gguf_stop_ids)
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.layer_types and len(self.layer_types) != self.num_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries for num_layers={self.num_layers}")
        if "local" in self.layer_types and not self.sliding_window:
            raise ValueError("local (sliding-window) layers need sliding_window > 0")
        if self.attention not in IMPLS:
            raise ValueError(f"attention={self.attention!r}; expected one of {IMPLS}")
        if self.attention_block < 1:
            raise ValueError(f"attention_block={self.attention_block} must be >= 1")
        object.__setattr__(self, "remat", remat_policy(self.remat))
        for name in ("param_dtype", "compute_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16"):
                raise ValueError(f"{name}={getattr(self, name)!r}; expected 'float32' or 'bfloat16'")

    def layer_type(self, i: int) -> LayerType:
        return self.layer_types[i] if self.layer_types else "global"

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def tiny(cls, family: Family = "qwen2", **override) -> "ModelConfig":
        """A CPU-sized model of the given family, for tests (gemma's DummyGemma idea: same code path, tiny)."""
        base = dict(family=family, vocab_size=128, embed_dim=32, num_layers=2, num_heads=4, num_kv_heads=2,
                    head_dim=8, mlp_dim=64, rope_theta=10_000.0, tie_embeddings=True)
        base.update(FAMILY_FLAGS[family])
        base.update(override)
        return cls(**base)


def stop_ids(*declared) -> tuple[int, ...]:
    """The union of end-of-generation ids, sorted: each argument is one declaration (an id, a list of ids, or None
    for "not declared"), e.g. config.json's eos_token_id, generation_config.json's, the tokenizer's eos_token_id.

    A checkpoint may spread its stop ids over several places (the first Llama-3-Instruct release listed <|eot_id|>
    only in generation_config.json); decoding must end on any of them, as transformers' generate does with a list
    eos_token_id. Raises ValueError on an id that is not a non-negative int."""
    out: set[int] = set()
    for ids in declared:
        for i in ([] if ids is None else ids if isinstance(ids, (list, tuple, set, frozenset)) else [ids]):
            try:                            # ints of any kind (numpy's from GGUF metadata), never bools or floats
                token = None if isinstance(i, bool) else operator.index(i)
            except TypeError:
                token = None
            if token is None or token < 0:
                raise ValueError(f"end-of-generation id {i!r} is not a token id (declared as {ids!r})")
            out.add(token)
    return tuple(sorted(out))


# The flags that make each family what it is; hf_config.py reads the remaining numbers from config.json.
FAMILY_FLAGS: dict[str, dict] = {
    "llama": dict(activation="silu", norm_eps=1e-5),
    "qwen2": dict(activation="silu", qkv_bias=True),
    "qwen3": dict(activation="silu", qk_norm=True),
    "gemma3": dict(activation="gelu_tanh", qk_norm=True, sandwich_norms=True, norm_plus_one=True, embed_scale=True,
                   query_pre_attn_scalar=8.0, rope_local_theta=10_000.0, rope_theta=1_000_000.0,
                   layer_types=("local", "global"), sliding_window=4),
}
