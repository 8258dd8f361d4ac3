"""LoRA (models/lora.py): fresh adapters leave the logits exactly as they were; the merged export and the PEFT
adapter directory give the adapted model's logits (transformers + peft); the adapter-off reference gives the DPO
loss of a separate reference copy; a step moves only the adapters; an adapter-only checkpoint resumes bitwise."""
from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from caujax import train
from caujax.losses import dpo
from caujax.methods import METHODS
from caujax.models import Decoder, ModelConfig, save_pretrained
from caujax.models.config import LoRAConfig
from caujax.models.lora import adapter_off, join, merge_adapters, set_dropout_key, split_trainable
from caujax.sharding import make_mesh
from caujax.step import init_state, make_train_step
from model_fixtures import TINY, padded_batch, parity_weights, torch_logits
from model_fixtures import torch_model as hf_torch_model

REPO = pathlib.Path(__file__).resolve().parent.parent


def _adapted(cfg: ModelConfig, lora: LoRAConfig, seed: int = 0, b_std: float = 0.0):
    """(base Decoder, the same base with adapters): B ~ N(0, b_std) (0 = a fresh adapter)."""
    base = Decoder(cfg, rngs=nnx.Rngs(seed))
    graphdef, fresh = nnx.split(Decoder(cfg.replace(lora=lora), rngs=nnx.Rngs(seed + 1)))
    adapters, _ = split_trainable(fresh)
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 2), 64))
    adapters = jax.tree_util.tree_map_with_path(
        lambda path, v: b_std * jax.random.normal(next(keys), v.shape) if path[-2].key == "b" else v, adapters)
    return base, nnx.merge(graphdef, join(adapters, nnx.state(base)))


def _from_weights(family: str) -> Decoder:
    """TINY[family] holding model_fixtures.parity_weights (peaked attention, norms far from 1)."""
    import tempfile

    from caujax.models import load_pretrained
    from model_fixtures import make_hf_checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        make_hf_checkpoint(family, pathlib.Path(tmp))
        model, _ = load_pretrained(tmp)
    return model


@pytest.mark.parametrize("family", ["qwen2", "gemma3"])
def test_fresh_adapters_give_the_base_logits_exactly(family):
    base, adapted = _adapted(ModelConfig.tiny(family), LoRAConfig(rank=4, alpha=16))
    tokens, mask, positions = padded_batch()
    want = np.asarray(base(tokens, mask, positions))
    got = np.asarray(adapted(tokens, mask, positions))
    # W + s A 0 is W bit for bit, so the merged model is the base itself ...
    for a, b in zip(jax.tree.leaves(nnx.state(merge_adapters(adapted))), jax.tree.leaves(nnx.state(base))):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # ... and x W + s (x A) 0 adds an exact zero; the logits match to float32 round-off, not always bit for bit:
    # the extra add changes how XLA fuses the ops after it (on an AVX-512 CPU a norm's reduction in Gemma 3's
    # graph came out 1 ulp apart, 1.5e-7; on an AVX2 one they were identical).
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    _, moved = _adapted(ModelConfig.tiny(family), LoRAConfig(rank=4, alpha=16), b_std=0.1)
    assert np.abs(np.asarray(moved(tokens, mask, positions)) - want).max() > 1e-2   # the adapters do act


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_merged_export_and_peft_adapter_give_the_adapted_logits(family, tmp_path):
    """Unmerged adapters (caujax) == merged weights (caujax and transformers) == base + PEFT adapter (peft), 1e-4;
    targets cover attention and MLP projections with alpha / r != 1."""
    import peft
    import transformers

    from caujax.models.peft_export import save_adapter

    base_model = _from_weights(family)
    lora = LoRAConfig(rank=3, alpha=6.0, targets=("q", "v", "o", "up", "down"))
    graphdef, fresh = nnx.split(Decoder(TINY[family].replace(lora=lora), rngs=nnx.Rngs(1)))
    keys = iter(jax.random.split(jax.random.PRNGKey(7), 64))
    adapters = jax.tree.map(lambda v: 0.2 * jax.random.normal(next(keys), v.shape), split_trainable(fresh)[0])
    adapted = nnx.merge(graphdef, join(adapters, nnx.state(base_model)))
    tokens, mask, positions = padded_batch()
    want = np.asarray(adapted(tokens, mask, positions))
    real = mask.astype(bool)
    assert np.abs(want - np.asarray(base_model(tokens, mask, positions)))[real].max() > 0.05

    merged = merge_adapters(adapted)
    assert merged.cfg.lora is None and not jax.tree.leaves(nnx.state(merged, nnx.LoRAParam))
    assert np.abs(np.asarray(merged(tokens, mask, positions)) - want)[real].max() < 1e-4
    save_pretrained(merged, None, tmp_path / "merged")
    hf_merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert np.abs(torch_logits(hf_merged, tokens, mask, positions) - want)[real].max() < 1e-4

    save_adapter(adapted, tmp_path / "adapter", base="tiny-base")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 3 and config["lora_alpha"] == 6.0 and config["base_model_name_or_path"] == "tiny-base"
    hf_base = hf_torch_model(family, parity_weights(family))
    with_adapter = peft.PeftModel.from_pretrained(hf_base, tmp_path / "adapter").eval()
    got = torch_logits(with_adapter, tokens, mask, positions)
    assert np.abs(got - want)[real].max() < 1e-4


def test_adapter_off_reference_gives_the_dpo_loss_of_a_separate_copy_and_moves_only_adapters():
    """The step's LoRA reference (the policy with B = 0) against log π_ref from a plain Decoder holding a copy of
    the base weights: the same DPO loss (1e-6). One AdamW step then changes every adapter and no base weight."""
    cfg = ModelConfig.tiny("qwen2")
    base, adapted = _adapted(cfg, LoRAConfig(rank=4, alpha=8, dropout=0.0), b_std=0.05)
    graphdef, params = nnx.split(adapted)
    rs = np.random.RandomState(0)
    T = 20                                           # 8 rows: 4 pairs, [chosen; rejected]
    tokens = rs.randint(1, cfg.vocab_size, (8, T)).astype(np.int32)
    mask = np.ones((8, T), np.int32)
    loss_mask = np.zeros((8, T), np.int32)
    loss_mask[:, 5:T - 1] = 1
    batch = dict(tokens_BT=tokens, mask_BT=mask, loss_mask_BT=loss_mask)
    section = dpo.DPOParams(beta=0.5)
    objective = functools.partial(METHODS["dpo"].objective, params=section)
    reference = functools.partial(METHODS["dpo"].reference, params=section)

    copy = nnx.merge(*nnx.split(Decoder(cfg, rngs=nnx.Rngs(9))))     # other weights, then the base copied in
    nnx.update(copy, jax.tree.map(jnp.copy, nnx.state(base)))
    mb = {k: jnp.asarray(v) for k, v in batch.items()}
    copy_graphdef, copy_params = nnx.split(copy)

    @jax.jit          # compiled like the step below: eager op-by-op float32 sums round differently (2e-6 on AVX-512)
    def separate_loss(params, copy_params, mb):
        loss = objective(nnx.merge(graphdef, params), mb | reference(nnx.merge(copy_graphdef, copy_params), mb))
        return loss.total / loss.count
    separate = float(separate_loss(params, copy_params, mb))

    mesh = make_mesh(devices=jax.devices()[:1])
    tx = optax.adamw(1e-2)
    state, sharding = init_state(params, tx, mesh, seed=0)
    step_fn = make_train_step(objective, tx, graphdef=graphdef, state_sharding=sharding, mesh=mesh,
                              reference=reference, row_blocks=2, reference_is_base=True)
    before = jax.tree.map(np.asarray, state.params)
    state, metrics = step_fn(state, batch, None)
    print(f"DPO loss, adapter-off reference {float(metrics['loss']):.9f} vs separate copy {separate:.9f}")
    assert abs(float(metrics["loss"]) - separate) < 1e-6 and abs(separate - np.log(2)) > 1e-3
    after = jax.tree.map(np.asarray, state.params)
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), before, after)
    trained, frozen = split_trainable(moved)
    assert all(jax.tree.leaves(trained)) and not any(jax.tree.leaves(frozen))
    size = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
    assert size(state.opt_state) == 2 * size(split_trainable(state.params)[0]) + 1     # Adam moments of adapters only
    # The reference itself is unaffected by training: B = 0 gives the base exactly.
    off = nnx.merge(graphdef, adapter_off(state.params))
    assert np.array_equal(np.asarray(off(tokens)), np.asarray(base(tokens)))


def _lora_run(run_dir, steps, *extra):
    return train.main(["--config", str(REPO / "configs/tiny.py"), "--method", "dpo", f"--run_dir={run_dir}",
                       f"--steps={steps}", "--checkpoint.every_steps=2", "--checkpoint.keep=5",
                       "--data.seq_len=256", "--data.num_examples=16", "--model.lora.rank=4",
                       "--model.lora.dropout=0.1", *extra])


def test_adapter_only_checkpoint_resumes_bitwise_and_exports(tmp_path):
    """4 steps straight vs 2 steps, then --resume to 4 (dropout on: the per-step key must be restored too). The
    checkpoint holds the adapters and their moments, not the base; --export writes a merged HF directory."""
    import orbax.checkpoint as ocp

    straight = _lora_run(tmp_path / "straight", 4, "--export=false")
    _lora_run(tmp_path / "split", 2, "--export=false")
    resumed = _lora_run(tmp_path / "split", 4, "--resume", "--export=true")
    timeless = lambda ls: [{k: v for k, v in l.items() if k != "tokens_per_s"} for l in ls]
    assert timeless(resumed) == timeless(straight[2:])
    assert abs(straight[0]["loss"] - np.log(2)) < 1e-6        # fresh adapters: policy == reference at step 0

    def arrays(run):
        tree = ocp.StandardCheckpointer().restore((tmp_path / run / "checkpoints" / "4" / "state").absolute())
        return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    ours, want = arrays("split"), arrays("straight")
    assert sorted(ours) == sorted(want)
    assert all(a.tobytes() == want[k].tobytes() for k, a in ours.items())
    params = [k for k in ours if k.startswith("['params']")]
    assert params and all("_lora" in k for k in params), "the checkpoint holds base weights"
    hf = json.loads((tmp_path / "split" / "hf" / "config.json").read_text())
    assert hf["num_hidden_layers"] == 2 and (tmp_path / "split" / "hf" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "split" / "hf" / "caujax_export.json").read_text()) == {"step": 4}
    # Finished and exported: nothing to do. Killed before its export: the rerun writes it, training nothing.
    assert _lora_run(tmp_path / "split", 4, "--resume", "--export=true") == []
    (tmp_path / "split" / "hf" / "caujax_export.json").unlink()
    assert _lora_run(tmp_path / "split", 4, "--resume", "--export=true") == []
    assert json.loads((tmp_path / "split" / "hf" / "caujax_export.json").read_text()) == {"step": 4}
    # The checkpoint holds adapters only, so the base and the adapters' scale make the run: changing them is refused.
    with pytest.raises(ValueError, match=r"model.lora.alpha=None \(this run: 16.0\)"):
        _lora_run(tmp_path / "split", 6, "--resume", "--model.lora.alpha=16")


def test_adapter_dropout_acts_only_with_a_key_and_never_on_the_reference():
    cfg = ModelConfig.tiny("qwen2")
    base, adapted = _adapted(cfg, LoRAConfig(rank=4, dropout=0.5), b_std=0.2)
    tokens = np.random.RandomState(0).randint(1, cfg.vocab_size, (2, 12))
    plain = np.asarray(adapted(tokens))
    graphdef, params = nnx.split(adapted)
    dropped = nnx.merge(graphdef, params)
    set_dropout_key(dropped, jax.random.PRNGKey(0))
    other = nnx.merge(graphdef, params)
    set_dropout_key(other, jax.random.PRNGKey(1))
    a, b = np.asarray(dropped(tokens)), np.asarray(other(tokens))
    assert np.abs(a - plain).max() > 1e-3 and np.abs(a - b).max() > 1e-3     # a key draws a mask; keys differ
    assert np.array_equal(np.asarray(nnx.merge(graphdef, params)(tokens)), plain)   # no key: no dropout
    off = nnx.merge(graphdef, adapter_off(params))
    set_dropout_key(off, jax.random.PRNGKey(0))
    assert np.array_equal(np.asarray(off(tokens)), np.asarray(base(tokens)))  # B = 0: dropout cannot reach π_ref


def test_adapted_model_export_needs_a_merge_and_peft_needs_a_base_checkpoint(tmp_path):
    _, adapted = _adapted(ModelConfig.tiny("llama"), LoRAConfig(rank=2))
    with pytest.raises(ValueError, match="merge them first"):
        save_pretrained(adapted, None, tmp_path / "hf")
    with pytest.raises(ValueError, match="model.lora.export=peft .* a random init"):
        train.main(["--config", str(REPO / "configs/tiny.py"), f"--run_dir={tmp_path / 'run'}",
                    "--model.lora.rank=2", "--model.lora.export=peft"])
    assert not (tmp_path / "run").exists()


def test_lora_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"lora.targets=.*'qkv'.*expected a non-empty subset"):
        LoRAConfig(rank=4, targets=("q", "qkv"))
    with pytest.raises(ValueError, match=r"lora.dropout=1.0"):
        LoRAConfig(rank=4, dropout=1.0)
    with pytest.raises(ValueError, match=r"--model.lora.rnak"):
        train.main(["--config", str(REPO / "configs/tiny.py"), "--model.lora.rnak=4"])


@pytest.mark.parametrize("preset,extra", [("tiny_grpo.py", "--grpo.beta=0.04"), ("tiny_ppo.py", "--ppo.kl_coef=0.05")])
def test_rl_with_adapters_trains_adapters_and_head_against_the_adapter_off_reference(preset, extra, tmp_path):
    """GRPO with beta > 0 (reference inside the step) and PPO with a KL penalty (reference at rollout time): both
    take π_ref from the policy with its adapters off; PPO's value head trains with the adapters, the base does not."""
    import orbax.checkpoint as ocp

    lines = train.main(["--config", str(REPO / "configs" / preset), f"--run_dir={tmp_path}", "--steps=2",
                        "--export=false", "--model.lora.rank=4", extra])
    assert all(np.isfinite(l["loss"]) for l in lines)
    assert abs(lines[0]["kl"]) < 1e-6          # the first update's policy is the base: KL to π_ref is 0
    if preset == "tiny_grpo.py":               # a new rollout from the moved policy: π_ref stayed the base
        assert lines[1]["kl"] > 1e-7
    tree = ocp.StandardCheckpointer().restore((tmp_path / "checkpoints" / "2" / "state").absolute())
    params = {jax.tree_util.keystr(k): np.asarray(v)
              for k, v in jax.tree_util.tree_flatten_with_path(tree.get("params"))[0]}
    assert params and all("_lora" in k or "value_" in k for k in params), sorted(params)
    assert any(np.abs(v).max() > 0 for k, v in params.items() if "'b'" in k)    # B left zero: adapters trained
    if preset == "tiny_ppo.py":
        assert any("value_kernel" in k and np.abs(v).max() > 0 for k, v in params.items())
