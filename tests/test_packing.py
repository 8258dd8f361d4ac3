"""Sequence packing and per-batch widths: every example lands in exactly one pack within seq_len, deterministically;
the SFT loss and its gradients over packed rows equal those over the same examples unpacked; batches are as wide as
their longest row (rounded to data.pad_multiple); packing with a pair method is refused."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from caujax.data.batches import batch_width, loss_positions, sft_batch
from caujax.data.packing import pack, pack_length, packed_batch
from caujax.losses import sft
from caujax.models import Decoder
from model_fixtures import TINY, strong_weights


def _rows(n, seed=0, vocab=128):
    rng = np.random.RandomState(seed)
    return [(rng.randint(4, vocab, rng.randint(2, 9)).tolist(), rng.randint(4, vocab, rng.randint(1, 12)).tolist())
            for _ in range(n)]


def test_pack_uses_every_row_once_within_seq_len_and_is_deterministic():
    rows = _rows(60) + [(list(range(4, 30)), list(range(4, 20)))]      # one row longer than seq_len: cut, alone
    packs = pack(rows, 24, seed=3)
    flat = [id(r) for p in packs for r in p]
    assert sorted(flat) == sorted(id(r) for r in rows)
    assert all(pack_length(p, 24) <= 24 for p in packs)
    assert sum(pack_length(p, 24) for p in packs) > 0.9 * 24 * (len(packs) - 1)    # best fit leaves little room
    assert [[rows.index(r) for r in p] for p in pack(rows, 24, seed=3)] == [[rows.index(r) for r in p] for p in packs]


def test_batch_width_rounds_the_longest_row_up_and_caps_at_seq_len():
    assert batch_width([3, 70, 9], 512, 64) == 128
    assert batch_width([500], 512, 128) == 512
    assert batch_width([3], 512, 0) == 512
    assert sft_batch([([1, 2], [3, 4])], 512, 0, multiple=8)["tokens_BT"].shape == (1, 8)


@pytest.mark.parametrize("name,attention", [("qwen2", "plain"), ("gemma3", "blockwise")])
def test_packed_sft_loss_and_gradients_equal_unpacked(name, attention):
    cfg = TINY[name].replace(attention=attention, attention_block=8)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    state = strong_weights(cfg)
    rows, seq_len = _rows(12, seed=1, vocab=cfg.vocab_size), 32
    packs = pack(rows, seq_len, seed=0)
    assert len(packs) < len(rows)
    packed = packed_batch(packs, seq_len, 0, seq_len)
    assert packed["mask_BT"].max() >= 2
    unpacked = sft_batch([r for p in packs for r in p], seq_len, 0)

    def loss(state, batch):
        out = sft.objective(nnx.merge(graphdef, state), batch, sft.SFTParams())
        return out.total, out.count

    (t_pack, n_pack), g_pack = jax.value_and_grad(loss, has_aux=True)(state, packed)
    (t_flat, n_flat), g_flat = jax.value_and_grad(loss, has_aux=True)(state, unpacked)
    assert float(n_pack) == float(n_flat) == sum(len(c) for _, c in rows)
    np.testing.assert_allclose(float(t_pack), float(t_flat), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_pack), jax.tree.leaves(g_flat)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))


def test_packing_is_refused_for_pair_methods():
    from caujax.config import DataConfig, ModelSource, RunConfig

    with pytest.raises(ValueError, match="data.packing applies to --method sft only"):
        RunConfig(method="dpo", model=ModelSource(arch=TINY["qwen2"]), steps=1, data=DataConfig(packing=True))


def test_loss_positions_list_each_rows_loss_columns_then_minus_one():
    loss_mask = np.array([[0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 0]], np.int32)
    np.testing.assert_array_equal(loss_positions(loss_mask, 2), [[1, 2, -1, -1], [2, 3, 4, -1]])
    assert loss_positions(loss_mask, 64).shape == (2, 6)                  # capped at T


@pytest.mark.parametrize("packed", [False, True])
def test_loss_window_gives_the_same_sft_loss_and_gradients(packed):
    """data.loss_window: the vocabulary projection at the completion columns only; same sums, same gradients, for
    plain and packed rows (a packed row's loss columns belong to several documents)."""
    cfg = TINY["gemma3"].replace(attention="blockwise", attention_block=8)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    state = strong_weights(cfg)
    rows, seq_len = _rows(10, seed=2, vocab=cfg.vocab_size), 32
    full = packed_batch(pack(rows, seq_len, seed=0), seq_len, 0, seq_len) if packed else sft_batch(rows, seq_len, 0)
    window = dict(full, loss_index_BW=loss_positions(full["loss_mask_BT"], 4))
    assert window["loss_index_BW"].shape[1] < seq_len

    def loss(state, batch):
        out = sft.objective(nnx.merge(graphdef, state), batch, sft.SFTParams())
        return out.total, (out.count, out.metrics["nll"])

    (t_win, (n_win, nll_win)), g_win = jax.value_and_grad(loss, has_aux=True)(state, window)
    (t_full, (n_full, nll_full)), g_full = jax.value_and_grad(loss, has_aux=True)(state, full)
    assert float(n_win) == float(n_full) == sum(len(c) for _, c in rows)
    np.testing.assert_allclose([float(t_win), float(nll_win)], [float(t_full), float(nll_full)], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_win), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6 * float(np.abs(b).max()))


def test_sft_collate_adds_the_loss_window_only_when_asked():
    from caujax.config import DataConfig
    from caujax.data.examples import collate_packed, collate_sft

    rows = _rows(6, seed=3)
    plain = collate_sft(rows, DataConfig(seq_len=32, pad_multiple=8), 0, 1)
    assert "loss_index_BW" not in plain
    cfg = DataConfig(seq_len=32, pad_multiple=8, loss_window=4)
    for batch in (collate_sft(rows, cfg, 0, 1), collate_packed(pack(rows, 32, seed=0), cfg, 0, 1)):
        index = batch["loss_index_BW"]
        assert index.shape[1] % 4 == 0 or index.shape[1] == batch["tokens_BT"].shape[1]
        for i in range(len(index)):
            np.testing.assert_array_equal(index[i][index[i] >= 0], np.flatnonzero(batch["loss_mask_BT"][i]))
