"""python -m caujax.plan (issue 12): the real train step and sampler compiled for a mesh of fake CPU devices, with
per-device bytes read from the shardings and from XLA's memory analysis."""
import dataclasses
import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from caujax import plan as planner
from caujax.config import load_preset
from caujax.models import Decoder
from caujax.sampling.sampler import cache_bytes
from tests.conftest import REPO


def _cfg(name, **data):
    cfg = load_preset(str(REPO / "configs" / name))
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data)) if data else cfg


def test_parameter_and_optimizer_bytes_follow_the_parameter_count():
    """Full fine-tuning on data=1 x fsdp=4 x tensor=2: each device holds 1/8 of every matrix (the layout shards
    them over fsdp and tensor) plus the small vectors; AdamW keeps two float32 moments of every trained weight."""
    cfg = _cfg("tiny.py")
    plan = planner.make_plan(cfg, {"data": 1, "fsdp": 4, "tensor": 2})
    arch = cfg.model.arch
    leaves = jax.tree.leaves(nnx.state(nnx.eval_shape(lambda: Decoder(arch, rngs=nnx.Rngs(0)))))
    count = sum(math.prod(x.shape) for x in leaves)
    vectors = sum(math.prod(x.shape) for x in leaves if len(x.shape) <= 2 and x.shape[-1] in (arch.embed_dim,))
    assert plan.param_count == plan.trainable_count == count
    assert count * 4 / 8 <= plan.params_b <= count * 4 / 8 + vectors * 4
    assert 0 <= plan.optimizer_b - 2 * plan.params_b <= 64                  # + AdamW's step count
    assert plan.step_temp_b > 0 and plan.step_peak_b == plan.state_b + plan.batch_b + plan.step_temp_b
    assert "all-reduce" in plan.step_collectives or "reduce-scatter" in plan.step_collectives
    assert plan.sampler_temp_b == 0                                          # SFT has no rollout


def test_grpo_plan_with_lora_compiles_the_sampler_and_counts_its_cache():
    cfg = _cfg("tiny_grpo.py")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lora=dataclasses.replace(
        cfg.model.lora, rank=4)))
    sizes = {"data": 2, "fsdp": 2, "tensor": 2}
    plan = planner.make_plan(cfg, sizes)
    ro = cfg.grpo.rollout
    arch = cfg.model.arch
    D, F, NH, KH = arch.embed_dim, arch.mlp_dim, arch.num_heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
    # rank x (in + out) for q, k, v, o, gate, up, down in every layer
    adapters = 4 * arch.num_layers * ((D + NH) + 2 * (D + KH) + (NH + D) + 3 * (D + F))
    assert plan.trainable_count == adapters                      # rank 4 on q, k, v, o, gate, up, down
    assert plan.trainable_count < plan.param_count
    rows = cfg.data.batch_size * cfg.grpo.mini_batches
    assert arch.num_kv_heads % 2 == 0              # so the cache splits over data x fsdp = 4 and tensor = 2
    expected_cache = cache_bytes(arch.replace(compute_dtype=cfg.model.compute_dtype), rows,
                                 32 + ro.max_completion_length) // 8
    assert plan.kv_cache_b == expected_cache and plan.sampler_temp_b >= plan.kv_cache_b
    assert plan.rollout_peak_b == plan.state_b + plan.sampler_params_b + plan.sampler_temp_b


def test_cli_reports_a_misfit_and_suggests_a_mesh_that_fits(capsys):
    big = planner.make_plan(_cfg("tiny.py"), {"data": 1, "fsdp": 4, "tensor": 2})
    hbm = big.peak_b + 1                 # fits on 8 devices, not on 2
    plan = planner.main(["--config", "configs/tiny.py", "--mesh", "fsdp=2", "--hbm", f"{hbm}B", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert plan.peak_b > hbm and out["fits"] is False
    mesh = out["suggestion"]
    assert mesh is not None and mesh["fsdp"] * mesh["tensor"] > 2
    assert planner.make_plan(_cfg("tiny.py"), mesh).peak_b <= hbm


def test_warns_when_micro_batches_cannot_split_over_the_mesh():
    cfg = _cfg("tiny.py", batch_size=8, micro_batch_size=2)
    assert "do not split over data x fsdp = 4" in planner.warnings_for(cfg, {"data": 2, "fsdp": 2, "tensor": 1})[0]
    assert planner.warnings_for(cfg, {"data": 1, "fsdp": 2, "tensor": 4}) == []


@pytest.mark.parametrize("text, message", [("fsdp=0", "N >= 1"), ("pipe=2", "AXIS=N"), ("fsdp=x", "AXIS=N")])
def test_bad_mesh_is_named(text, message):
    with pytest.raises(ValueError, match=message):
        planner.parse_mesh(text)


def test_bad_cli_input_is_named():
    for bad in ("0GiB", "lots", "1.2.3GB", "e"):
        with pytest.raises(ValueError, match="--hbm"):
            planner.parse_bytes(bad)
    with pytest.raises(ValueError, match=r"--mesh.fsdp: the planner's mesh is --mesh"):
        planner.main(["--config", "configs/tiny.py", "--mesh", "fsdp=2", "--mesh.fsdp=8"])
    with pytest.raises(FileNotFoundError, match="shipped: DeepSeek-R1-Distill-Qwen-14B"):
        planner.main(["--config", "configs/tiny.py", "--mesh", "fsdp=2", "--shape", "Nope"])


def test_sizes_and_collectives_parsing():
    assert planner.parse_bytes("95GiB") == 95 * 2**30 and planner.parse_bytes("80GB") == 80 * 10**9
    hlo = ("%body.1 (p: f32[4]) -> f32[4] {\n"
           "  %ar = f32[4,8]{1,0} all-reduce(f32[4,8]{1,0} %x), replica_groups={}\n}\n"
           "ENTRY %main (a: bf16[2]) -> bf16[2] {\n"
           "  %w = s32[] while(%t), condition=%cond.1, body=%body.1\n"
           "  %ag = bf16[16,2]{1,0} all-gather(bf16[2,2]{1,0} %a), dimensions={0}\n}\n")
    table = planner.collectives(hlo)
    assert table == {"all-reduce": {"ops": 1, "bytes": 128, "in_loops": 1},
                     "all-gather": {"ops": 1, "bytes": 64, "in_loops": 0}}
    assert np.isfinite(planner.GiB)


def test_the_sampler_plan_holds_no_float32_copy_of_bf16_weights():
    """XLA:CPU turns bf16 dots into float32 ones; hoisted out of the decode loop, that conversion is a float32 copy
    of every matrix for the whole rollout, which no accelerator makes (memory_plan.CPU_ONLY_COPIES_OFF). The plan's
    sampler temporaries may hold float32 copies of the matrices of the layer that runs, never of every matrix at
    once (without memory_plan.CPU_ONLY_COPIES_OFF: 38.6 MB here, KV cache 0.3 MB, bf16 weights 15.3 MB)."""
    cfg = _cfg("tiny_grpo.py")
    wide = cfg.model.arch.replace(embed_dim=512, mlp_dim=2048, num_heads=8, head_dim=64)   # weights >> the rest
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=wide, compute_dtype="bfloat16"))
    plan = planner.make_plan(cfg, {"data": 1, "fsdp": 2, "tensor": 1})
    assert plan.sampler_params_b > 8 * plan.kv_cache_b                      # a copy would dwarf the cache
    assert plan.kv_cache_b <= plan.sampler_temp_b < plan.kv_cache_b + plan.sampler_params_b


def test_planner_inputs_that_would_mislead_are_refused_or_warned(capsys):
    with pytest.raises(ValueError, match="data is given twice"):
        planner.parse_mesh("data=2,data=4")
    with pytest.raises(ValueError, match="with its unit, such as 95GiB"):
        planner.parse_bytes("80")
    with pytest.raises(SystemExit):
        planner.main(["--config", "configs/tiny.py", "--mesh", "fsdp=2", "--tries", "0"])
    assert "--tries: expected a whole number >= 1" in capsys.readouterr().err
    # tiny's widths are even: fsdp=3 divides none of them, so every device keeps every weight
    planner.main(["--config", "configs/tiny.py", "--mesh", "fsdp=3", "--data.batch_size=24"])
    err = capsys.readouterr().err
    assert "warning: the weights do not split over fsdp=3 x tensor=1" in err and "embed 32" in err
