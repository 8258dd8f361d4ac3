"""Config: every preset loads and says how to launch it; dotted overrides convert, validate and name typos."""
from __future__ import annotations

import dataclasses
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

from caujax import config
from caujax.config import RunConfig, apply_overrides, load_preset, parse_overrides, valid_keys
from caujax.methods import METHODS

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
PRESETS = sorted(CONFIGS.glob("*.py"))


def test_there_are_presets_for_each_method_and_model():
    names = {p.stem for p in PRESETS}
    for model in ("qwen2p5_7b", "r1_qwen_14b"):
        for method in ("sft", "dpo", "kto"):
            assert f"{model}_{method}" in names
    assert "tiny" in names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_and_its_docstring_is_the_launch_command(path):
    doc = path.read_text().split('"""')[1]
    if path.stem.startswith("demo_"):          # the demo pipeline's presets (caujax/demo/config.py)
        from caujax.demo.config import DemoConfig
        demo = load_preset(path, DemoConfig)
        assert "python -m caujax.demo" in doc and f"--config configs/{path.name}" in doc
        assert (demo.sft.method, demo.grpo.method) == ("sft", "grpo") and demo.sft.model.lora.rank > 0
        return
    cfg = load_preset(path)
    assert isinstance(cfg, RunConfig)
    assert "python -m caujax.train" in doc and f"--config configs/{path.name}" in doc
    if path.stem != "tiny":
        assert cfg.method == path.stem.rsplit("_", 1)[1]
        assert cfg.data.batch_size % cfg.data.num_micro_batches == 0
        assert (cfg.model.path is None) == path.stem.startswith("tiny")


def test_every_config_field_has_a_comment():
    """The schema's fields say what they are (the paper symbol, the unit) on their own line."""
    source = inspect.getsource(config)
    for cls in (config.ModelSource, config.DataConfig, config.OptimConfig, config.ReferenceConfig,
                config.MeshConfig, config.CheckpointConfig, config.RunConfig):
        for f in dataclasses.fields(cls):
            if cls is config.RunConfig and f.name in METHODS:     # a method's section: its row documents it
                row = METHODS[f.name]
                assert f.type is row.params and row.summary and row.params.__doc__, f"method {f.name} undocumented"
                continue
            line = re.search(rf"^    {f.name}: .*$", source, re.MULTILINE)
            assert line and "#" in line.group(0), f"{cls.__name__}.{f.name} has no comment"


def test_methods_come_from_the_table_and_config_imports_no_jax():
    """The CLI choices and the config sections are the table's rows; loading a config (and the table) imports no
    jax, so a launcher or a config linter can run where jax is not installed."""
    assert config.typing.get_args(config.Method) == tuple(METHODS)
    assert {f.name for f in dataclasses.fields(config.RunConfig)} >= set(METHODS)
    code = ("import sys, caujax.config, caujax.methods, caujax.models; "
            "cfg = caujax.config.load_preset('configs/tiny.py'); "
            "bad = sorted(m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'flax', 'optax'))); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_parse_overrides_accepts_both_spellings():
    assert parse_overrides(["--optim.lr=1e-5", "--steps", "2", "--model.remat=true"]) == {
        "optim.lr": "1e-5", "steps": "2", "model.remat": "true"}
    with pytest.raises(ValueError, match="has no value"):
        parse_overrides(["--steps"])
    with pytest.raises(ValueError, match="unexpected argument 'steps=2'"):
        parse_overrides(["steps=2"])


def test_overrides_convert_by_field_type():
    cfg = load_preset(CONFIGS / "tiny.py")
    new = apply_overrides(cfg, {"optim.lr": "1e-5", "steps": "7", "model.remat": "save_dots", "dpo.beta": "1",
                                "data.micro_batch_size": "none", "model.arch.num_layers": "3",
                                "optim.max_grad_norm": "None", "method": "kto", "kto.desirable_weight": "1.33"})
    assert new.optim.lr == 1e-5 and new.steps == 7 and new.model.remat == "save_dots" and new.dpo.beta == 1.0
    assert new.data.micro_batch_size is None and new.data.num_micro_batches == 1
    assert new.model.arch.num_layers == 3 and new.optim.max_grad_norm is None and new.method == "kto"
    assert cfg.steps == 2                 # frozen: the original is untouched
    assert isinstance(new.dpo.beta, float)


def test_unknown_key_names_the_closest_valid_keys():
    cfg = load_preset(CONFIGS / "tiny.py")
    with pytest.raises(ValueError, match=r"unknown config key --optim\.lrr; did you mean --optim\.lr\b"):
        apply_overrides(cfg, {"optim.lrr": "1e-5"})
    with pytest.raises(ValueError, match=r"unknown config key --dpo\.betta; did you mean --dpo\.beta"):
        apply_overrides(cfg, {"dpo.betta": "0.2"})
    with pytest.raises(ValueError, match=r"--stpes; did you mean --steps"):
        apply_overrides(cfg, {"stpes": "3"})


def test_bad_values_are_named_with_the_key():
    cfg = load_preset(CONFIGS / "tiny.py")
    with pytest.raises(ValueError, match=r"--steps=two: not a int"):
        apply_overrides(cfg, {"steps": "two"})
    with pytest.raises(ValueError, match=r"--steps=2.5: expected int, got float"):
        apply_overrides(cfg, {"steps": "2.5"})
    with pytest.raises(ValueError, match=r"--optim.schedule=cosin: expected one of .*did you mean 'cosine'"):
        apply_overrides(cfg, {"optim.schedule": "cosin"})
    with pytest.raises(ValueError, match=r"--method=reinforce: expected one of \('sft', 'dpo', 'kto', 'grpo', 'ppo'\)"):
        apply_overrides(cfg, {"method": "reinforce"})
    with pytest.raises(ValueError, match=r"--data.packing=yes: expected true or false"):
        apply_overrides(cfg, {"data.packing": "yes"})
    with pytest.raises(ValueError, match=r"--model.remat=save_dot: expected one of .*did you mean 'save_dots'"):
        apply_overrides(cfg, {"model.remat": "save_dot"})


def test_validation_runs_on_overridden_values():
    cfg = load_preset(CONFIGS / "tiny.py")
    with pytest.raises(ValueError, match=r"--data.micro_batch_size=3: data.batch_size=4 is not a multiple of "
                                         r"data.micro_batch_size=3"):
        apply_overrides(cfg, {"data.micro_batch_size": "3"})
    with pytest.raises(ValueError, match=r"--dpo.beta=0: DPOParams.beta must be > 0"):
        apply_overrides(cfg, {"dpo.beta": "0"})
    with pytest.raises(ValueError, match=r"--model.arch.num_kv_heads=3: num_heads=4 is not a multiple"):
        apply_overrides(cfg, {"model.arch.num_kv_heads": "3"})


def test_valid_keys_cover_nested_sections():
    keys = valid_keys(RunConfig)
    assert {"optim.lr", "dpo.beta", "kto.undesirable_weight", "model.arch", "checkpoint.every_steps"} <= set(keys)


def test_preset_file_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_preset(tmp_path / "nope.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match=r"empty.py defines no get_config"):
        load_preset(tmp_path / "empty.py")


def test_tuple_fields_take_a_literal_or_a_comma_list():
    cfg = load_preset(CONFIGS / "tiny_grpo.py")
    for text in ("causal,format", "causal, format", "('causal', 'format')", "['causal', 'format']"):
        assert apply_overrides(cfg, {"grpo.rollout.rewards": text}).grpo.rollout.rewards == ("causal", "format")
    assert apply_overrides(cfg, {"grpo.rollout.rewards": "causal"}).grpo.rollout.rewards == ("causal",)
    both = apply_overrides(cfg, {"grpo.rollout.rewards": "causal,format", "grpo.rollout.reward_weights": "1,0.1"})
    assert both.grpo.rollout.reward_weights == (1.0, 0.1)
    with pytest.raises(ValueError, match=r"reward_weights=x: not a float"):
        apply_overrides(cfg, {"grpo.rollout.rewards": "causal,format", "grpo.rollout.reward_weights": "x,0.1"})


class _Ids:
    """What train.build_model reads of a tokenizer for a random init: its special ids and its size."""
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self):
        return 64


def test_run_settings_reach_the_built_decoder_and_are_refused_on_the_arch():
    import jax
    from flax import nnx

    from caujax import train
    from caujax.sharding import make_mesh

    cfg = apply_overrides(load_preset(CONFIGS / "tiny.py"), {
        "model.scan_layers": "false", "model.attention": "plain", "model.attention_block": "64",
        "model.remat": "full", "model.arch.vocab_size": "64"})
    graphdef, params, _ = train.build_model(cfg, make_mesh(devices=jax.devices()[:1]), _Ids())
    arch = nnx.merge(graphdef, params).cfg
    assert (arch.scan_layers, arch.attention, arch.attention_block, arch.remat) == (False, "plain", 64, "full")
    assert arch.compute_dtype == cfg.model.compute_dtype
    # Set on the architecture instead, a run setting would be replaced without a word: refused, naming the key.
    with pytest.raises(ValueError, match=r"model\.arch\.scan_layers=False is a run setting.*--model\.scan_layers"):
        apply_overrides(load_preset(CONFIGS / "tiny.py"), {"model.arch.scan_layers": "false"})
    assert not apply_overrides(cfg, {"model.arch.scan_layers": "false"}).model.run_arch(arch).scan_layers
    with pytest.raises(ValueError, match=r"model\.arch\.param_dtype='bfloat16' is a run setting.*--model\.param_dtype"):
        apply_overrides(load_preset(CONFIGS / "tiny.py"), {"model.arch.param_dtype": "bfloat16"})
    with pytest.raises(ValueError, match=r"model\.arch\.lora is a run setting.*set --model\.lora\.rank=4 instead"):
        apply_overrides(load_preset(CONFIGS / "tiny.py"), {"model.arch.lora.rank": "4"})
    # Typos near a refused key suggest the key to set, not the refused one.
    with pytest.raises(ValueError, match=r"key --model\.arch\.lora\.rnk; did you mean --model\.lora\.rank\?"):
        apply_overrides(cfg, {"model.arch.lora.rnk": "4"})
    with pytest.raises(ValueError, match=r"--model\.arch\.atention; did you mean --model\.attention, "):
        apply_overrides(cfg, {"model.arch.atention": "plain"})
    with pytest.raises(ValueError, match=r"--model\.attention=flash: expected one of \('auto', .*'splash'\); "
                                         r"did you mean 'blockwise'\?"):
        apply_overrides(cfg, {"model.attention": "flash"})
    for other_name in ("blokwise", "flex_attention", "FLASH_ATTENTION_2"):
        with pytest.raises(ValueError, match=r"did you mean 'blockwise'\?"):
            apply_overrides(cfg, {"model.attention": other_name})
