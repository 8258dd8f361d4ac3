"""Per-host data (issue 12): a process of a pod builds only its part of each fixed-data batch (data.batches.RowShare),
padded to the whole batch's widths, so its rows equal the matching rows of the one-process batch, for every
layout. The two-process run itself (tests/test_multiprocess.py) shows the parts placed and trained as one."""
import numpy as np
import pytest

from caujax.config import DataConfig
from caujax.data import examples as ex
from caujax.data.batches import RowShare
from caujax.data.packing import pack


def _rows(n: int, seed: int, labels: bool = False):
    """(prompt, completion) rows of varied lengths; the last row is the longest, so a part that builds its own
    rows with its own widths would get narrower arrays than the whole batch's."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        P, C = (int(rng.integers(2, 8)), int(rng.integers(1, 6))) if i < n - 1 else (9, 11)
        row = (list(rng.integers(4, 50, P)), list(rng.integers(4, 50, C)))
        rows.append(row + (bool(i % 2),) if labels else row)
    return rows


CFG = DataConfig(seq_len=32, pad_multiple=4, loss_window=2)
LAYOUTS = {
    "sft": (lambda: _rows(8, 0), ex.collate_sft),
    "sft packed": (lambda: pack(_rows(16, 1), 16, seed=0)[:8], ex.collate_packed),
    "dpo": (lambda: [(p, c, c[::-1] + [7]) for p, c in _rows(8, 2)], ex.collate_dpo),
    "kto": (lambda: _rows(8, 3, labels=True), ex.collate_kto),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("count", [2, 4])
def test_the_parts_of_a_batch_are_the_rows_of_the_whole_batch(layout, count):
    make, collate = LAYOUTS[layout]
    rows = make()
    cfg = DataConfig(seq_len=16, pad_multiple=4, loss_window=2) if layout == "sft packed" else CFG
    whole = collate(rows, cfg, 0, 2)
    parts = [collate(rows, cfg, 0, 2, RowShare(i, count)) for i in range(count)]
    for part in parts:
        assert part.keys() == whole.keys()
        for k, v in part.items():     # every part has the whole batch's columns and window
            assert v.shape[1:] == whole[k].shape[1:] and len(v) == len(whole[k]) // count, k
    for k, v in whole.items():
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), v, err_msg=k)


def test_a_fixed_source_hands_over_its_part_and_resumes_it():
    rows = _rows(16, 4)
    make = lambda share, position=None: ex.FixedBatches(      # noqa: E731
        rows, 8, 0, lambda picked: ex.collate_sft(picked, CFG, 0, 1, share), position, share)
    whole, half = make(RowShare()), make(RowShare(1, 2))
    for _ in range(3):                # across an epoch boundary (2 batches an epoch)
        a, b = whole.next(), half.next()
        np.testing.assert_array_equal(a["tokens_BT"][4:], b["tokens_BT"])
    resumed = half.restart(half.position())
    assert resumed.share == RowShare(1, 2)
    np.testing.assert_array_equal(resumed.next()["tokens_BT"], whole.next()["tokens_BT"][4:])


@pytest.mark.parametrize("held, ways, share", [
    ([2, 3], 4, RowShare(1, 2)),            # a host's devices hold blocks 2 and 3 of 4
    ([3], 8, RowShare(3, 8)),
    ([0, 1, 2, 3], 4, RowShare()),          # one process holds every row
    ([1, 1, 0, 0], 2, RowShare()),          # replicated over tensor: still all rows
    ([0, 2], 4, RowShare()),                # not contiguous: the host builds the whole batch
    ([1, 2], 4, RowShare()),                # contiguous but not one of 2 equal parts
])
def test_a_share_is_one_equal_contiguous_part_or_everything(held, ways, share):
    assert RowShare.of_blocks(held, ways) == share


def test_one_process_builds_every_row():
    from caujax.sharding import make_mesh, row_share
    assert row_share(make_mesh(2, 2, 2)) == RowShare()          # 8 fake devices, all this process's


def test_a_share_that_does_not_divide_the_rows_is_refused():
    with pytest.raises(ValueError, match="7 rows do not split into 2"):
        RowShare(0, 2).rows(7)
