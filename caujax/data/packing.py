"""Sequence packing for SFT: several short examples share one row of seq_len tokens, each its own segment.

A packed row holds documents 1, 2, ... one after another; `mask_BT` carries the segment id (0 = padding), which the
decoder reads as "attend only inside the segment, positions restart at 0" (models/decoder.py), and the next-token
targets never cross a document boundary (losses/common.next_token_targets). The SFT loss of a packed batch is
therefore the loss of its examples unpacked: the same per-token log-probs, summed over the same completion tokens
(tests/test_packing.py checks loss and gradients).

Packing is best-fit decreasing over the fitted lengths (a classic bin-packing heuristic, within about 11/9 of the
fewest rows in the worst case; Johnson 1973), done once
per run from a seeded order, so the packed rows, and a resumed run's batches, are the same every time.
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from caujax.data.batches import Ids, fit, fitted_length


def pack(rows: Sequence[tuple[Ids, Ids]], seq_len: int, seed: int) -> list[list[tuple[Ids, Ids]]]:
    """Group (prompt ids, completion ids) rows into packs whose fitted lengths sum to <= seq_len. Rows longer than
    seq_len are cut first (batches.fit), exactly as unpacked rows are. Deterministic in (rows, seq_len, seed)."""
    order = np.random.default_rng(seed).permutation(len(rows))           # ties broken by a seeded order
    lengths = [fitted_length(*rows[i], seq_len) for i in order]
    by_length = sorted(range(len(order)), key=lambda j: -lengths[j])
    packs: list[list[int]] = []
    free: list[tuple[int, int]] = []        # (room left, pack index), sorted: best fit = smallest room that fits
    for j in by_length:
        at = bisect.bisect_left(free, (lengths[j], -1))
        if at == len(free):
            packs.append([])
            room, k = seq_len, len(packs) - 1
        else:
            room, k = free.pop(at)
        packs[k].append(int(order[j]))
        if room - lengths[j] > 0:
            bisect.insort(free, (room - lengths[j], k))
    return [[rows[i] for i in p] for p in packs]


def packed_batch(packs: Sequence[Sequence[tuple[Ids, Ids]]], seq_len: int, pad_id: int, width: int
                 ) -> dict[str, np.ndarray]:
    """The SFT layout (losses/common.py) for packed rows: tokens_BT, mask_BT = segment id (1, 2, ... per document,
    0 padding), loss_mask_BT over each document's completion; `width` columns."""
    B = len(packs)
    tokens = np.full((B, width), pad_id, np.int32)
    mask = np.zeros((B, width), np.int32)
    loss_mask = np.zeros((B, width), np.int32)
    for i, docs in enumerate(packs):
        at = 0
        for segment, (prompt, completion) in enumerate(docs, start=1):
            prompt, completion = fit(prompt, completion, seq_len)
            P, C = len(prompt), len(completion)
            if at + P + C > width:
                raise ValueError(f"pack {i} holds {at + P + C} tokens, more than its {width} columns")
            tokens[i, at: at + P + C] = prompt + completion
            mask[i, at: at + P + C] = segment
            loss_mask[i, at + P - 1: at + P + C - 1] = 1
            at += P + C
    return {"tokens_BT": tokens, "mask_BT": mask, "loss_mask_BT": loss_mask}


def pack_length(docs: Sequence[tuple[Ids, Ids]], seq_len: int) -> int:
    return sum(fitted_length(p, c, seq_len) for p, c in docs)
