"""The plan itself: compile a run's train step (and rollout sampler) for a mesh with abstract inputs and read
per-device bytes from the shardings and from XLA (python -m caujax.plan is its command line, plan.py)."""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re

SHAPES = pathlib.Path(__file__).resolve().parent.parent / "configs" / "shapes"


def architecture(cfg, shape: str | None = None):
    """The ModelConfig of cfg's model: --shape (a name in configs/shapes or a config.json path), model.path's
    config.json, configs/shapes/<basename of model.path>.json, or model.arch. Raises FileNotFoundError naming the
    places looked in."""
    src = cfg.model
    if shape is None and src.arch is not None:
        return src.arch
    return shape_config(shape) if shape else shape_config(
        pathlib.Path(src.path) / "config.json", SHAPES / f"{pathlib.Path(src.path).name}.json")


def shape_config(*places):
    """ModelConfig from the first config.json found among `places` (paths, or names in configs/shapes)."""
    import transformers

    from caujax.models.hf_config import config_from_hf

    tried = []
    for place in places:
        for path in (pathlib.Path(place), SHAPES / f"{place}.json"):
            tried.append(str(path))
            if path.is_file():
                try:
                    fields = json.loads(path.read_text())
                    hf = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
                except (ValueError, KeyError, TypeError, AttributeError) as err:   # JSONDecodeError is a ValueError
                    raise ValueError(f"{path}: not a usable config.json ({type(err).__name__}: {err}); it needs "
                                     f"model_type and the architecture's fields") from None
                return config_from_hf(hf, source=str(path))
    raise FileNotFoundError(f"no architecture for the plan: looked for {', '.join(dict.fromkeys(tried))} (pass "
                            f"--shape NAME or a config.json; shipped: "
                            f"{', '.join(sorted(p.stem for p in SHAPES.glob('*.json')))})")


def batch_spec(cfg) -> dict:
    """The global batch one optimizer step receives, as ShapeDtypeStructs, field by field as the method's batch
    source builds it (data/examples.py, data/batches.py, rl/rollout.py): B rows (DPO: 2B, [chosen; rejected]), T
    columns (seq_len; RL: max_prompt_length + max_completion_length), W loss-window columns."""
    import jax
    import jax.numpy as jnp

    d, m = cfg.data, cfg.method
    sec = getattr(cfg, m)
    cached = cfg.reference.mode == "cached"
    B, W = d.batch_size, d.loss_window
    T = sec.rollout.max_prompt_length + sec.rollout.max_completion_length if m in ("grpo", "ppo") else d.seq_len
    rows = 2 * B if m == "dpo" else B
    ints = ["tokens_BT", "mask_BT", "loss_mask_BT"]
    floats = []
    if m == "kto":
        ints += ["kl_tokens_BT", "kl_mask_BT", "kl_loss_mask_BT", "label_B"]
        floats += ["ref_logp_B", "ref_kl_B"] if cached else []
    if m == "dpo" and cached:
        floats += ["ref_chosen_B", "ref_rejected_B"]
    if W and m in ("sft", "grpo"):
        ints.append("loss_index_BW")
    if m in ("grpo", "ppo"):
        floats.append("sampler_logp_BT")
        if sec.rollout.top_k or sec.rollout.top_p < 1.0:
            floats.append("support_floor_BT")
    if m == "grpo":
        floats += ["advantage_B"] + ([] if sec.on_policy else ["old_logp_BT"])
    if m == "ppo":
        floats += ["old_logp_BT", "old_value_BT", "advantage_BT", "return_BT"]
    dims = {"B": rows, "T": T, "W": W}

    def shape(name):
        suffix = name.rsplit("_", 1)[1]
        return tuple(B if (c == "B" and suffix == "B" and m == "dpo") else dims[c] for c in suffix)
    return {name: jax.ShapeDtypeStruct(shape(name), jnp.int32 if name in ints else jnp.float32)
            for name in ints + floats}


def shard_bytes(tree, shardings) -> int:
    """Bytes one device holds of `tree` (abstract arrays) placed with `shardings` (the largest shard)."""
    import jax
    import numpy as np

    total = 0
    for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
        total += math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
    return total


_COLLECTIVE = re.compile(r"=\s*(\(?[^=]*?\)?)\s+(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)"
                         r"(?:-start)?\(")
_ARRAY = re.compile(r"(pred|s8|u8|s16|u16|bf16|f16|s32|u32|f32|s64|u64|f64)\[([\d,]*)\]")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f32": 4,
          "s64": 8, "u64": 8, "f64": 8}


def collectives(hlo_text: str) -> dict[str, dict]:
    """{kind: {"ops": n, "bytes": per-device result bytes summed over the ops, "in_loops": ops inside a while body
    (run once per iteration: per layer of the scan, per micro-batch)}} from a compiled module's HLO text."""
    bodies = set(re.findall(r"body=%?([\w.\-]+)", hlo_text))
    out, current = {}, None
    for line in hlo_text.splitlines():
        head = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if head and not line.startswith(" "):
            current = head[1]
        m = _COLLECTIVE.search(line)
        if not m:
            continue
        size = sum(_BYTES[t] * math.prod(int(x) for x in dims.split(",") if x) for t, dims in _ARRAY.findall(m[1]))
        row = out.setdefault(m[2], {"ops": 0, "bytes": 0, "in_loops": 0})
        row["ops"] += 1
        row["bytes"] += size
        row["in_loops"] += current in bodies
    return out


@dataclasses.dataclass
class Plan:
    mesh: dict[str, int]
    params_b: int                         # per device, master weights (trained and frozen) as the state holds them
    optimizer_b: int                      # per device, the optimizer's moments (of the trainable part)
    reference_b: int                      # per device, a separate frozen π_ref (0 with LoRA or without a reference)
    batch_b: int                          # per device, one optimizer step's batch
    step_temp_b: int                      # per device, the train step's temporaries (XLA memory analysis)
    step_collectives: dict
    sampler_params_b: int = 0             # per device, the weights re-placed for sampling (SAMPLE_RULES: whole per
    #                                       data shard, heads over tensor), beside the train state during a rollout
    kv_cache_b: int = 0                   # per device, the rollout's KV cache (GRPO/PPO)
    sampler_temp_b: int = 0               # per device, the sampler's temporaries, the KV cache included
    sampler_collectives: dict = dataclasses.field(default_factory=dict)
    param_count: int = 0                  # parameters of the model (all of them: trained and frozen)
    trainable_count: int = 0

    @property
    def state_b(self) -> int:
        return self.params_b + self.optimizer_b + self.reference_b

    @property
    def step_peak_b(self) -> int:
        """Train step: the state and batch it is given (the state is donated: the new one reuses its buffers),
        plus its temporaries."""
        return self.state_b + self.batch_b + self.step_temp_b

    @property
    def rollout_peak_b(self) -> int:
        """Rollout: the train state stays in memory while the sampler runs with its own temporaries (its
        compute-dtype weight copy, the KV cache) on its own placement of the weights."""
        return self.state_b + self.sampler_params_b + self.sampler_temp_b if self.sampler_temp_b else 0

    @property
    def peak_b(self) -> int:
        return max(self.step_peak_b, self.rollout_peak_b)


def make_plan(cfg, sizes: dict[str, int], arch=None, devices=None) -> Plan:
    """Compile cfg's train step (and sampler) for a data x fsdp x tensor mesh of `devices` (default: the first
    data*fsdp*tensor of jax.devices()) with abstract inputs; nothing is allocated or run."""
    import functools

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from caujax import methods
    from caujax.models import Decoder, lora
    from caujax.models.layout import is_matrix
    from caujax.sharding import TRAIN_RULES, batch_sharding, batch_ways, make_mesh, tree_shardings
    from caujax.step import TrainState, make_optimizer, make_train_step

    n = sizes["data"] * sizes["fsdp"] * sizes["tensor"]
    devices = list(devices if devices is not None else jax.devices())
    if n > len(devices):
        raise ValueError(f"mesh {sizes} needs {n} devices; {len(devices)} are visible")
    mesh = make_mesh(sizes["data"], sizes["fsdp"], sizes["tensor"], devices=devices[:n])
    if cfg.data.batch_size % batch_ways(mesh):
        raise ValueError(f"data.batch_size={cfg.data.batch_size} is not a multiple of data x fsdp = "
                         f"{batch_ways(mesh)}")
    method = methods.get(cfg.method)
    section = getattr(cfg, cfg.method)
    src = cfg.model
    arch = src.run_arch((arch or architecture(cfg)).replace(param_dtype=src.param_dtype))
    decoder_graphdef, params = nnx.split(nnx.eval_shape(lambda: Decoder(arch, rngs=nnx.Rngs(0))))
    adapters = arch.lora is not None
    ref = None
    if method.uses_reference(section) and not adapters:       # train.py's compute-dtype copy of π_ref
        compute = jnp.dtype(src.compute_dtype)
        ref = jax.tree_util.tree_map_with_path(
            lambda path, p: jax.ShapeDtypeStruct(p.shape, compute if is_matrix(path) else p.dtype), params)
    graphdef, decoder_params = decoder_graphdef, params
    if method.wrap is not None:            # PPO's value head or critic decoder, traced as train.py builds it

        def wrapped():
            return nnx.merge(*method.wrap(*nnx.split(Decoder(arch, rngs=nnx.Rngs(0))), section))
        graphdef, params = nnx.split(nnx.eval_shape(wrapped))
    tx = make_optimizer(cfg.optim, cfg.steps)
    state = jax.eval_shape(lambda p: TrainState(jnp.zeros((), jnp.int32), p, tx.init(lora.trainable(p)),
                                                jax.random.PRNGKey(0)), params)
    sharding = tree_shardings(state, mesh, TRAIN_RULES)
    batch = batch_spec(cfg)
    in_step = method.reference is not None and (ref is not None or (adapters and method.uses_reference(section)))
    cached = in_step and cfg.reference.mode == "cached"
    step_fn = make_train_step(functools.partial(method.objective, params=section), tx, graphdef=graphdef,
                              state_sharding=sharding, mesh=mesh, num_micro_batches=cfg.data.num_micro_batches,
                              reference=functools.partial(method.reference, params=section)
                              if in_step and not cached else None,
                              global_fields=method.global_fields, row_blocks=method.row_blocks,
                              reference_is_base=adapters)
    ref_arg = ref if in_step and not cached and not adapters else None
    compiled = step_fn.lower(state, batch, ref_arg).compile()
    ref_b = shard_bytes(ref, tree_shardings(ref, mesh, TRAIN_RULES)) if ref is not None else 0
    trainable = lora.trainable(state.params)
    plan = Plan(mesh=sizes, params_b=shard_bytes(state.params, sharding.params),
                optimizer_b=shard_bytes(state.opt_state, sharding.opt_state), reference_b=ref_b,
                batch_b=shard_bytes(batch, jax.tree.map(lambda _: batch_sharding(mesh), batch)),
                step_temp_b=int(compiled.memory_analysis().temp_size_in_bytes),
                step_collectives=collectives(compiled.as_text()),
                param_count=sum(math.prod(x.shape) for x in jax.tree.leaves(state.params)),
                trainable_count=sum(math.prod(x.shape) for x in jax.tree.leaves(trainable)))
    if cfg.method in ("grpo", "ppo"):
        _plan_sampler(plan, cfg, section, mesh, decoder_graphdef, decoder_params, arch)
    return plan


# XLA:CPU has no bfloat16 dot: its float normalization gives every bf16 matmul float32 operands, and while-loop
# invariant code motion then hoists the weights' conversions out of the decode loop, so the CPU program holds a
# float32 copy of every matrix for the whole rollout (twice the bf16 sampling weights: 6.2 of the 9.1 GiB of
# sampler temporaries of Qwen2.5-1.5B GRPO on fsdp=8). An accelerator multiplies bf16 natively and makes no such
# copy. Without the hoisting the conversions stay inside the loop, one layer at a time, and the temporaries are the
# KV cache plus a step's working set (2.85 GiB for that plan, of which the cache 2.64).
CPU_ONLY_COPIES_OFF = {"xla_disable_hlo_passes": "while-loop-invariant-code-motion"}


def _plan_sampler(plan: Plan, cfg, section, mesh, graphdef, params, arch) -> None:
    """The rollout's sampler as rl/rollout.py calls it: rows/G prompts of up to max_prompt_length tokens, G samples
    each, max_completion_length new tokens; weights in SAMPLE_RULES (whole per data shard, heads over tensor)."""
    import jax
    import jax.numpy as jnp

    from caujax.sampling import SamplingParams
    from caujax.sampling.sampler import _cast_matrices, _sample, bucket, bucket_rows, cache_bytes
    from caujax.sharding import SAMPLE_RULES, batch_sharding, batch_ways, tree_shardings, use_rules

    ro = section.rollout
    shards = batch_ways(mesh)
    prompts = cfg.data.batch_size * section.mini_batches // ro.n
    B, P, M = bucket_rows(prompts, shards), bucket(ro.max_prompt_length), ro.max_completion_length
    params = jax.eval_shape(lambda p: _cast_matrices(p, jnp.dtype(arch.compute_dtype)), params)  # sampling_weights
    placed = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), params,
                          tree_shardings(params, mesh, SAMPLE_RULES))
    rows = jax.ShapeDtypeStruct((B, P), jnp.int32, sharding=batch_sharding(mesh))
    key = jax.eval_shape(lambda: jax.random.key(0))
    live = jax.ShapeDtypeStruct((), jnp.int32)
    sp = SamplingParams(n=ro.n, temperature=ro.temperature, top_p=ro.top_p, top_k=ro.top_k, max_new_tokens=M)
    with jax.set_mesh(mesh), use_rules(SAMPLE_RULES):
        compiled = _sample.lower(graphdef, placed, rows, rows, live, key, params=sp, eos_ids=(0,), stop_ids=(),
                                 cache_len=P + M).compile(compiler_options=CPU_ONLY_COPIES_OFF)
    plan.sampler_params_b = shard_bytes(params, tree_shardings(params, mesh, SAMPLE_RULES))
    heads = mesh.shape["tensor"] if arch.num_kv_heads % mesh.shape["tensor"] == 0 else 1   # kv_heads -> tensor
    plan.kv_cache_b = cache_bytes(arch, B * ro.n, P + M) // (shards * heads)
    plan.sampler_temp_b = int(compiled.memory_analysis().temp_size_in_bytes)
    plan.sampler_collectives = collectives(compiled.as_text())
