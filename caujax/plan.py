"""Will this run fit? Compile the real train step (and, for GRPO/PPO, the rollout sampler) for a mesh, with
abstract inputs, and read per-device memory and collectives from XLA.

    python -m caujax.plan --config configs/r1_qwen_14b_grpo.py --mesh data=1,fsdp=32,tensor=2 [--hbm 95GiB]
        [--method M] [--shape NAME|config.json] [--dotted.overrides ...]

No weights are read and no accelerator is needed: on a CPU the mesh's devices are faked
(--xla_force_host_platform_device_count), so the program XLA compiles is the one each chip of that mesh would
run, partitioned the same way. The architecture comes from model.path's config.json when it exists, else from
configs/shapes/<basename of model.path>.json (the published config.json numbers of the presets' checkpoints), or
--shape. Per device it prints parameters, optimizer state and the frozen reference (exact, from their shardings),
the step's temporaries (activations, gradients, XLA scratch: memory_analysis().temp_size_in_bytes), the KV cache
and the sampler's temporaries; the collectives in each program with their sizes; and whether the peak fits the
given HBM. When it does not, it suggests the smallest fsdp x tensor that does (checked by compiling it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import re
import sys

import numpy as np

from caujax.memory_plan import (SHAPES, Plan, architecture, batch_spec, collectives, make_plan,  # noqa: F401
                                shape_config)

GiB = 2 ** 30


def parse_mesh(text: str) -> dict[str, int]:
    """"data=1,fsdp=32,tensor=2" -> {"data": 1, "fsdp": 32, "tensor": 2} (missing axes are 1). ValueError names
    the bad part."""
    sizes, seen = {"data": 1, "fsdp": 1, "tensor": 1}, set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in sizes or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--mesh {text!r}: {part!r} is not AXIS=N with AXIS in data, fsdp, tensor and N >= 1 "
                             f"(e.g. data=1,fsdp=8,tensor=1)")
        if name in seen:
            raise ValueError(f"--mesh {text!r}: {name} is given twice")
        seen.add(name)
        sizes[name] = int(value)
    return sizes


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def parse_bytes(text: str) -> int:
    """"95GiB", "80GB", "16e9B" -> bytes. A number needs its unit: a bare 80 (bytes) is surely meant as GB."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?(?:e\d+)?)\s*(GiB|GB|MiB|MB|TiB|TB|B)\s*", text)
    if not m or float(m[1]) <= 0:
        raise ValueError(f"--hbm {text!r}: expected a positive size with its unit, such as 95GiB or 80GB")
    unit = {"GiB": GiB, "GB": 10 ** 9, "MiB": 2 ** 20, "MB": 10 ** 6, "TiB": 2 ** 40, "TB": 10 ** 12}.get(m[2], 1)
    return int(float(m[1]) * unit)


def replicated_weights(plan, sizes: dict[str, int], arch, itemsize: int) -> str | None:
    """A warning when the weights do not shrink with fsdp x tensor: a size that divides no weight dimension leaves
    them whole on every device (sharding.logical_spec replicates what it does not divide)."""
    shards = sizes["fsdp"] * sizes["tensor"]
    even = plan.param_count * itemsize / shards
    if shards == 1 or plan.params_b <= 2 * even:
        return None
    return (f"the weights do not split over fsdp={sizes['fsdp']} x tensor={sizes['tensor']}: "
            f"{plan.params_b / GiB:.2f} GiB of parameters per device where an even split holds {even / GiB:.2f}; "
            f"choose sizes that divide the model's widths (embed {arch.embed_dim}, heads {arch.num_heads} / kv "
            f"{arch.num_kv_heads}, MLP {arch.mlp_dim}, vocabulary {arch.vocab_size})")


def warnings_for(cfg, sizes: dict[str, int]) -> list[str]:
    """Settings that compile but waste the mesh."""
    ways = sizes["data"] * sizes["fsdp"]
    micro = cfg.data.batch_size // cfg.data.num_micro_batches * (2 if cfg.method == "dpo" else 1)
    out = []
    if micro % ways and not cfg.data.batch_size % ways:       # (a batch that does not split is refused anyway)
        out.append(f"a micro-batch's {micro} rows do not split over data x fsdp = {ways}: every device computes "
                   f"all of them (step._rows_spec replicates them); set data.micro_batch_size to a multiple of "
                   f"{ways}")
    return out


def candidates(sizes: dict[str, int], arch, limit: int) -> list[dict[str, int]]:
    """Meshes with the same data axis and a larger fsdp x tensor (tensor dividing the heads), smallest first."""
    out = []
    for tensor in (1, 2, 4, 8, 16):
        if arch.num_heads % tensor or arch.num_kv_heads % tensor:
            continue
        fsdp = 1
        while sizes["data"] * fsdp * tensor <= limit:
            if fsdp * tensor > sizes["fsdp"] * sizes["tensor"]:
                out.append({"data": sizes["data"], "fsdp": fsdp, "tensor": tensor})
            fsdp *= 2
    return sorted(out, key=lambda m: (m["fsdp"] * m["tensor"], m["tensor"]))


def report(plan: Plan, hbm: int | None, title: str) -> str:
    unit, size = ("GiB", GiB) if plan.peak_b >= GiB else ("MiB", 2 ** 20)     # tiny CPU shapes read in MiB
    g = lambda b: f"{b / size:9.2f}"
    lines = [title, f"per device                                {unit}"]
    rows = [("parameters", plan.params_b), ("optimizer state", plan.optimizer_b),
            ("frozen reference", plan.reference_b), ("batch", plan.batch_b),
            ("train step temporaries", plan.step_temp_b), ("= train step peak", plan.step_peak_b)]
    if plan.sampler_temp_b:
        rows += [("sampler weights (SAMPLE_RULES)", plan.sampler_params_b),
                 ("sampler temporaries", plan.sampler_temp_b), ("  of which KV cache", plan.kv_cache_b),
                 ("= rollout peak (train state kept)", plan.rollout_peak_b)]
    lines += [f"  {name:<36}{g(b)}" for name, b in rows]
    for name, table in (("train step", plan.step_collectives), ("sampler", plan.sampler_collectives)):
        if table:
            parts = [f"{k} x{v['ops']} ({v['in_loops']} in loops) {v['bytes'] / 2**20:,.0f} MiB"
                     for k, v in sorted(table.items())]
            lines.append(f"collectives, {name}: " + "; ".join(parts))
    if hbm:
        verdict = "fits" if plan.peak_b <= hbm else "does NOT fit"
        lines.append(f"peak {plan.peak_b / size:.2f} {unit} of {hbm / size:.2f} {unit} per device: {verdict}")
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} billion" if n >= 1e8 else f"{n / 1e6:.2f} million" if n >= 1e5 else f"{n:,}"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m caujax.plan", description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a preset, e.g. configs/r1_qwen_14b_grpo.py")
    ap.add_argument("--method", default=None, choices=["sft", "dpo", "kto", "grpo", "ppo"],
                    help="override the preset's method")
    ap.add_argument("--mesh", required=True, metavar="data=D,fsdp=F,tensor=T", help="the mesh to plan for")
    ap.add_argument("--hbm", default=None, metavar="SIZE", help="memory per device, e.g. 95GiB (H100 NVL: 94GB, "
                    "TPU v5p: 95GiB, v5e: 16GiB); with it the plan says whether the run fits and, if not, what does")
    ap.add_argument("--shape", default=None, metavar="NAME|config.json",
                    help="architecture: a name in configs/shapes or a config.json (default: from model.path)")
    ap.add_argument("--tries", type=_at_least_one, default=4,
                    help="meshes compiled at most while looking for one that fits (default 4)")
    ap.add_argument("--json", action="store_true", help="print the plan as one JSON object instead of the table")
    return ap


def main(argv: list[str] | None = None) -> Plan:
    args, rest = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    sizes = parse_mesh(args.mesh)
    hbm = parse_bytes(args.hbm) if args.hbm else None
    n = math.prod(sizes.values())
    # Fake devices for the mesh and for bigger meshes a suggestion may need; read when JAX first lists devices.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={4 * n}".strip()
    os.environ["JAX_PLATFORMS"] = "cpu"          # the plan is compiled on the host CPU whatever the machine has
    import jax

    from caujax.config import apply_overrides, load_preset, parse_overrides

    overrides = parse_overrides(rest)
    if any(k.startswith("mesh.") for k in overrides):
        raise ValueError(f"{', '.join('--' + k for k in overrides if k.startswith('mesh.'))}: the planner's mesh is "
                         f"--mesh data=D,fsdp=F,tensor=T (the preset's mesh is not read)")
    if args.method:
        overrides = {"method": args.method, **overrides}
    cfg = apply_overrides(load_preset(args.config), overrides)
    arch = architecture(cfg, args.shape)
    for w in warnings_for(cfg, sizes):
        print(f"caujax.plan: warning: {w}", file=sys.stderr)
    plan = make_plan(cfg, sizes, arch)
    replicated = replicated_weights(plan, sizes, arch, np.dtype(cfg.model.param_dtype).itemsize)
    if replicated:
        print(f"caujax.plan: warning: {replicated}", file=sys.stderr)
    name = args.shape or (pathlib.Path(cfg.model.path).name if cfg.model.path else "model.arch")
    title = (f"caujax.plan: {cfg.method} of {name} ({_count(plan.param_count)} parameters, "
             f"{_count(plan.trainable_count)} trained), mesh data={sizes['data']} fsdp={sizes['fsdp']} "
             f"tensor={sizes['tensor']} ({n} devices, {cfg.model.param_dtype} weights, "
             f"{cfg.model.compute_dtype} compute, remat={cfg.model.remat})")
    out = {"plan": dataclasses.asdict(plan) | {"step_peak_b": plan.step_peak_b, "rollout_peak_b": plan.rollout_peak_b,
                                               "peak_b": plan.peak_b}, "fits": None, "suggestion": None}
    if not args.json:
        print(report(plan, hbm, title), flush=True)
    if hbm:
        out["fits"] = plan.peak_b <= hbm
        if not out["fits"]:
            out["suggestion"] = _suggest(cfg, sizes, arch, hbm, args.tries, len(jax.devices()), args.json)
    if args.json:
        print(json.dumps(out))
    return plan


def _suggest(cfg, sizes, arch, hbm, tries, limit, quiet) -> dict | None:
    for mesh in candidates(sizes, arch, limit)[:tries]:
        if cfg.data.batch_size % (mesh["data"] * mesh["fsdp"]):
            continue
        plan = make_plan(cfg, mesh, arch)
        fits = plan.peak_b <= hbm
        if not quiet:
            print(f"  try data={mesh['data']} fsdp={mesh['fsdp']} tensor={mesh['tensor']}: peak "
                  f"{plan.peak_b / GiB:.2f} GiB: {'fits' if fits else 'does not fit'}", flush=True)
        if fits:
            if not quiet:
                print(f"suggestion: --mesh.data={mesh['data']} --mesh.fsdp={mesh['fsdp']} "
                      f"--mesh.tensor={mesh['tensor']}")
            return mesh
    if not quiet:
        print("no mesh tried fits: raise --tries, lower the batch or sequence lengths, or turn on model.remat")
    return None


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        print(f"caujax.plan: error: {err}", file=sys.stderr)
        sys.exit(2)
