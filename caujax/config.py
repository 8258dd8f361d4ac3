"""The run schema: frozen dataclasses with paper symbols in comments, preset loading, and `--a.b=c` CLI overrides."""
from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import pathlib
import types
import typing
from typing import Literal

from caujax.methods import METHODS
from caujax.models.config import AttentionImpl, DType, LoRAConfig, ModelConfig, RematPolicy, remat_policy

Method = Literal[tuple(METHODS)]        # the method names, from the method table


# ModelConfig fields that ModelSource sets for the run (run_arch; param_dtype in train.build_model), whatever the
# checkpoint or the arch says.
_RUN_SETTINGS = ("compute_dtype", "remat", "attention", "attention_block", "scan_layers", "param_dtype", "lora")
_ARCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.name in _RUN_SETTINGS}
ARCH_RUN_KEYS = frozenset(f"model.arch.{name}" for name in _RUN_SETTINGS)   # refused as overrides: not in --help


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where the policy (and the frozen reference π_ref, a copy of the initial policy) comes from."""

    path: str | None = None             # Hugging Face checkpoint directory or .gguf file; None = random init of arch
    arch: ModelConfig | None = None     # architecture for a random init (tests, benchmarks); ignored with `path`
    tokenizer: str | None = None        # tokenizer directory; None = the checkpoint's own, or for a random init a
    #                                     SentencePiece model trained on the run's text (data/batches.py)
    param_dtype: DType = "float32"      # master weights θ, and the optimizer moments, are kept in this dtype
    compute_dtype: DType = "bfloat16"   # matmul/activation dtype of the forward and backward passes
    remat: RematPolicy = "none"         # what each decoder block keeps for the backward pass: "none", "full",
    #                                     "save_dots", "save_attention" (models/config.py REMAT_POLICIES); memory
    #                                     for FLOPs, chosen per preset by python -m caujax.plan
    attention: AttentionImpl = "auto"   # "auto" (= blockwise), "plain", "blockwise" (flash-style, online softmax),
    #                                     "dot_product" (jax.nn) or "splash" (TPU Pallas; interpret mode elsewhere)
    attention_block: int = 256          # query/key block of the blockwise kernel (splash: a multiple of 128, >= 128)
    scan_layers: bool = True            # lax.scan over the stacked layers: compile time flat in depth; False: a
    #                                     Python loop over the same parameters, faster a step for shallow models on
    #                                     CPU (4-layer tiny Qwen2: 1.33 -> 1.17 s, bench/README.md)
    init_seed: int = 0                  # seed of the random init (and of LoRA's A matrices)
    lora: LoRAConfig = LoRAConfig()     # rank > 0: train low-rank adapters on a frozen base (models/lora.py)

    def __post_init__(self):
        if self.path is None and self.arch is None:
            raise ValueError("model: set model.path (a checkpoint) or model.arch (a random init)")
        object.__setattr__(self, "remat", remat_policy(self.remat))
        if self.attention_block < 1:
            raise ValueError(f"model.attention_block must be >= 1, got {self.attention_block}")
        for name in _RUN_SETTINGS:      # set on the arch, it would be silently replaced by the run's own value
            given, default = getattr(self.arch, name, None), _ARCH_DEFAULTS[name]
            run = (self.lora if self.lora.rank else None) if name == "lora" else getattr(self, name)
            if self.arch is not None and given != default and given != run:
                raise ValueError(f"model.arch.{name}={given!r} is a run setting, not part of the architecture: set "
                                 f"--model.{name} instead (now {run!r})")

    def run_arch(self, arch: ModelConfig) -> ModelConfig:
        """`arch` with this run's settings that no checkpoint stores (compute dtype, remat, attention kernel and
        block, layer scan, adapters); train.py and the memory plan build the same decoder from it."""
        return arch.replace(compute_dtype=self.compute_dtype, remat=self.remat, attention=self.attention,
                            attention_block=self.attention_block, scan_layers=self.scan_layers,
                            lora=self.lora if self.lora.rank else None)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Training text. tokens per optimizer step <= batch_size * seq_len (DPO: 2 * batch_size * seq_len); batches are
    padded to their longest row (pad_multiple) and, with packing, a row holds several examples."""

    source: str = "generated"           # "generated" (caujax.causal.generate), a .json file of CauGym-format problems
    #                                     (`python -m caujax.data generate`), or a .jsonl file of rows in the method's
    #                                     format (`python -m caujax.data convert --to sft|dpo|kto`)
    num_examples: int = 256             # problems to generate; for a file, the first N rows (0 = all)
    seed: int = 0                       # generation, pair construction and shuffling
    seq_len: int = 1024                 # T: tokens per row, prompt + completion, right-padded; longer rows lose the
    #                                     start of the prompt (the completion is what the loss reads)
    batch_size: int = 8                 # B: rows (SFT, KTO) or pairs (DPO) per optimizer step, all devices together
    micro_batch_size: int | None = None  # rows/pairs per accumulation micro-batch; B / micro_batch_size = M
    pad_multiple: int = 128             # a batch is padded to its longest row rounded up to this (one compiled
    #                                     shape per multiple up to seq_len; GRPO/PPO rollouts too, up to
    #                                     max_prompt_length + max_completion_length); 0 pads to the full length
    packing: bool = False               # SFT: pack several examples into each row of seq_len tokens (data/packing.py;
    #                                     the loss is unchanged); batch_size then counts packed rows
    loss_window: int = 0                # SFT, GRPO: > 0 computes the vocabulary projection only at the completion
    #                                     positions (each batch's most, rounded up to this multiple; batches.
    #                                     loss_positions); the loss is unchanged, the step is cheaper when prompts
    #                                     are long and the vocabulary large. 0 = every position

    def __post_init__(self):
        for name in ("seq_len", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be > 0, got {getattr(self, name)}")
        if self.num_examples < 0:
            raise ValueError(f"data.num_examples must be >= 0, got {self.num_examples}")
        for name in ("pad_multiple", "loss_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.{name} must be >= 0, got {getattr(self, name)}")
        micro = self.micro_batch_size
        if micro is not None and (micro <= 0 or self.batch_size % micro):
            raise ValueError(f"data.batch_size={self.batch_size} is not a multiple of data.micro_batch_size={micro}")

    @property
    def num_micro_batches(self) -> int:
        """M, the gradient-accumulation steps per optimizer step."""
        return self.batch_size // (self.micro_batch_size or self.batch_size)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW (Loshchilov & Hutter 2019) with linear warmup, then cosine or linear decay, and global-norm clipping."""

    lr: float = 1e-5                    # η, the peak learning rate (TRL defaults: SFT 2e-5, DPO/KTO 1e-6)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"   # decay after warmup
    warmup_ratio: float = 0.0           # fraction of the run's steps spent ramping η linearly from 0
    min_lr_ratio: float = 0.0           # η at the last step, as a fraction of the peak
    b1: float = 0.9                     # β1, first-moment decay
    b2: float = 0.999                   # β2, second-moment decay
    eps: float = 1e-8                   # ε in the Adam denominator
    weight_decay: float = 0.0           # λ, decoupled; applied to matrices only (not norms or biases)
    max_grad_norm: float | None = 1.0   # clip ‖g‖₂ of the whole gradient to this; None = no clipping

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        for name in ("warmup_ratio", "min_lr_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"optim.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"optim.max_grad_norm must be > 0 or None, got {self.max_grad_norm}")


@dataclasses.dataclass(frozen=True)
class ReferenceConfig:
    """How DPO/KTO get the reference log-probs log π_ref(y|x)."""

    mode: Literal["step", "cached"] = "step"   # "step": a frozen params tree, forward pass inside each train step;
    #                                            "cached": one pass before training, stored on disk, reused
    cache_dir: str | None = None        # where "cached" keeps its files (default <run_dir>/reference)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh; one size may be -1 (all remaining devices). Batch rows go over data x fsdp."""

    data: int = -1                      # pure data parallelism: whole weights per replica
    fsdp: int = 1                       # weights, gradients and moments sharded on D; batch rows split here too
    tensor: int = 1                     # heads, MLP width and vocabulary split (Megatron-style)

    def __post_init__(self):
        sizes = (self.data, self.fsdp, self.tensor)
        if any(s == 0 or s < -1 for s in sizes) or sizes.count(-1) > 1:
            raise ValueError(f"mesh sizes must be positive, with at most one -1; got data={self.data} "
                             f"fsdp={self.fsdp} tensor={self.tensor}")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Orbax checkpoints under <run_dir>/checkpoints: train state, data position, RNG and the config."""

    every_steps: int = 100              # save train state + data position every this many steps (and at the end)
    keep: int = 3                       # keep the last K checkpoints
    async_save: bool = True             # write in a background thread while training goes on

    def __post_init__(self):
        if self.every_steps <= 0 or self.keep <= 0:
            raise ValueError(f"checkpoint.every_steps and checkpoint.keep must be > 0, "
                             f"got {self.every_steps} and {self.keep}")


@dataclasses.dataclass(frozen=True)
class _RunFields:
    """The fields every run has; RunConfig adds one section per method of the method table."""

    method: Method                      # the objective, a row of caujax/methods.py (sft, dpo, kto, ...)
    model: ModelSource                  # π_θ at step 0, which is also π_ref
    steps: int                          # optimizer steps of the run (each sees batch_size rows/pairs)
    run_dir: str = "runs/default"       # config.json, metrics.jsonl, checkpoints/, loss.png, hf/
    data: DataConfig = DataConfig()     # the training text and how it is batched
    optim: OptimConfig = OptimConfig()  # η schedule, AdamW, clipping
    reference: ReferenceConfig = ReferenceConfig()   # how log π_ref is obtained (methods with a reference)
    mesh: MeshConfig = MeshConfig()     # data x fsdp x tensor
    checkpoint: CheckpointConfig = CheckpointConfig()   # how often, how many, async
    seed: int = 0                       # the train state's RNG
    log_every: int = 1                  # metrics.jsonl line every N steps
    export: bool = True                 # write the trained model as a Hugging Face directory at the end

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}; expected one of {tuple(METHODS)}")
        if self.steps <= 0 or self.log_every <= 0:
            raise ValueError(f"steps and log_every must be > 0, got {self.steps} and {self.log_every}")
        if self.data.loss_window and self.method not in ("sft", "grpo"):
            raise ValueError(f"data.loss_window applies to --method sft and grpo (method={self.method})")
        if self.data.packing and self.method != "sft":
            raise ValueError(f"data.packing applies to --method sft only (method={self.method}): preference pairs "
                             f"and rollouts are scored per row; they are padded to their batch's longest row instead")


# One training run: the common fields, then a section per method named after it and typed by the row's params
# class (`sft: SFTParams`, `dpo: DPOParams`, ...), whose docstrings name the loss symbols. Only the section of
# `method` is read; the others keep their defaults.
RunConfig = dataclasses.make_dataclass(
    "RunConfig", [(name, row.params, dataclasses.field(default_factory=row.params)) for name, row in METHODS.items()],
    bases=(_RunFields,), frozen=True,
    namespace={"__doc__": "One training run: " + ", ".join(f"{n} ({r.summary})" for n, r in METHODS.items()),
               "__module__": __name__})


# --- presets and dotted overrides ---------------------------------------------------------------------------------

def load_preset(path, kind=None):
    """`get_config()` of a preset file (configs/*.py), checked to return a `kind` (default RunConfig; the demo's
    presets return a caujax.demo.config.DemoConfig)."""
    kind = kind or RunConfig
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"caujax_preset_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config() returning a {kind.__name__}")
    cfg = module.get_config()
    if not isinstance(cfg, kind):
        raise ValueError(f"{path}: get_config() returned {type(cfg).__name__}, not a {kind.__name__}")
    return cfg


def valid_keys(cls, prefix: str = "") -> list[str]:
    """Every dotted key of a config class, nested dataclasses included."""
    keys = []
    for f in dataclasses.fields(cls):
        keys.append(prefix + f.name)
        inner = _dataclass_in(typing.get_type_hints(cls)[f.name])
        if inner is not None:
            keys += valid_keys(inner, f"{prefix}{f.name}.")
    return keys


def apply_overrides(cfg, overrides: dict[str, str]):
    """cfg with each `dotted.key -> text` applied through dataclasses.replace; unknown keys name the closest."""
    for key, text in overrides.items():
        cfg = _replace_path(cfg, key.split("."), text, key)
    return cfg


def parse_overrides(argv: list[str]) -> dict[str, str]:
    """["--optim.lr=1e-5", "--steps", "2"] -> {"optim.lr": "1e-5", "steps": "2"}."""
    out, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ValueError(f"unexpected argument {arg!r}; overrides look like --optim.lr=1e-5")
        if "=" in arg:
            key, text = arg[2:].split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, text = arg[2:], argv[i + 1]
            i += 1
        else:
            raise ValueError(f"override {arg} has no value; write {arg}=VALUE")
        out[key] = text
        i += 1
    return out


def _run_key(arch_key: str) -> str:
    """The key that sets a run setting refused under model.arch: model.arch.lora.rank -> model.lora.rank."""
    return "model." + arch_key.removeprefix("model.arch.")


def _replace_path(obj, parts: list[str], text: str, full_key: str):
    cls = type(obj)
    names = [f.name for f in dataclasses.fields(cls)]
    consumed = full_key.split(".")[: len(full_key.split(".")) - len(parts)]      # the sections above obj
    here = ".".join([*consumed, parts[0]])                                         # the key up to parts[0]
    if parts[0] not in names:
        valid = valid_keys(cls, "".join(p + "." for p in consumed))
        # A refused run-setting key (model.arch.lora.rank) is suggested as the key to set (model.lora.rank).
        shown = {k: _run_key(k) if any(k == r or k.startswith(r + ".") for r in ARCH_RUN_KEYS) else k
                 for k in valid}
        near = dict.fromkeys(shown[k] for k in difflib.get_close_matches(full_key, valid, n=3, cutoff=0.6))
        hint = f"; did you mean {', '.join('--' + n for n in near)}?" if near else f"; valid: {sorted(names)}"
        raise ValueError(f"unknown config key --{full_key}{hint}")
    if here in ARCH_RUN_KEYS and len(parts) > 1:    # e.g. --model.arch.lora.rank: ModelSource.__post_init__ says why
        section = _dataclass_in(typing.get_type_hints(cls)[parts[0]])
        inner = valid_keys(section, f"model.{parts[0]}.") if section else []
        run_key = _run_key(full_key)
        if run_key not in inner:
            near = difflib.get_close_matches(run_key, inner, n=1)
            raise ValueError(f"unknown config key --{full_key}" + (f"; did you mean --{near[0]}?" if near else ""))
        raise ValueError(f"--{full_key}: {here} is a run setting, not part of the architecture: set "
                         f"--{run_key}={text} instead")
    hint_type = typing.get_type_hints(cls)[parts[0]]
    current = getattr(obj, parts[0])
    if len(parts) == 1:
        value = _convert(text, hint_type, full_key)
    elif dataclasses.is_dataclass(current):
        value = _replace_path(current, parts[1:], text, full_key)
    elif current is None and _dataclass_in(hint_type) is not None:
        raise ValueError(f"--{full_key}: {here} is None in this preset; "
                         f"set a preset that defines it")
    else:
        raise ValueError(f"unknown config key --{full_key}: {parts[0]} is a {type(current).__name__}, not a section")
    try:
        return dataclasses.replace(obj, **{parts[0]: value})
    except ValueError as e:
        raise ValueError(f"--{full_key}={text}: {e}") from None


# Other tools' names for a choice, so that the error points to caujax's (difflib would offer 'splash' for 'flash'):
# transformers' attn_implementation values and the usual names of the kernels.
_CHOICE_ALIASES = {"flash": "blockwise", "flash_attention": "blockwise", "flash_attention_2": "blockwise",
                   "flex_attention": "blockwise", "eager": "plain", "sdpa": "dot_product", "cudnn": "dot_product"}


def check_choice(key: str | None, text: str, choices) -> str:
    """`text` if it is one of `choices`, else ValueError "--key=text: expected one of (...)" (key None: "'text':
    expected ...", for argparse, which names the option itself) with the nearest choice, or caujax's name for another
    tool's (_CHOICE_ALIASES: flash -> blockwise). Also used by caujax.eval."""
    if text not in choices:
        alias = _CHOICE_ALIASES.get(text.lower())
        near = [alias] if alias in choices else difflib.get_close_matches(text, [str(c) for c in choices], n=1)
        raise ValueError(f"{f'--{key}={text}' if key else repr(text)}: expected one of {tuple(choices)}"
                         + (f"; did you mean {near[0]!r}?" if near else ""))
    return text


def _dataclass_in(hint):
    """The dataclass in `hint` (`X`, `X | None`), if any."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    return next((o for o in options if dataclasses.is_dataclass(o)), None)


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _convert(text: str, hint, key: str):
    """Text -> a value of type `hint` (bool, int, float, str, Literal, tuple, X | None); loud on mismatch."""
    if _is_union(hint):
        options = typing.get_args(hint)
        if type(None) in options and text.lower() in ("none", "null"):
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(text, option, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    origin = typing.get_origin(hint)
    if origin is Literal:
        return check_choice(key, text, typing.get_args(hint))
    if hint is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--{key}={text}: expected true or false")
        return text.lower() in ("true", "1")
    if hint is str:
        return text
    if origin is tuple:
        # A Python literal ("('causal', 'format')", "(1.0, 0.1)") or a plain comma list ("causal,format", "causal").
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, (tuple, list)):
            item = (typing.get_args(hint) or (str,))[0]
            value = tuple(_convert(part.strip(), item, key) for part in text.split(",") if part.strip())
        return tuple(value)
    if hint in (int, float):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"--{key}={text}: not a {getattr(hint, '__name__', hint)}") from None
        if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if hint is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"--{key}={text}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__}")
    raise ValueError(f"--{key}: fields of type {hint} cannot be set from the command line")


def to_json_dict(cfg) -> dict:
    """The config as plain JSON data (config.json of a run)."""
    return dataclasses.asdict(cfg)
