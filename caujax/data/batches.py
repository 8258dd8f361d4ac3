"""Tokenization and padding into the batch layout of losses/common.py, the resumable batch iterator, method-format
JSONL rows, and the tiny SentencePiece tokenizer the CPU config trains on its own text.

A row is prompt + completion token ids, right-padded to seq_len. The prompt is the user message through the
tokenizer's chat template; the completion ends with EOS. Rows longer than seq_len lose the start of the prompt (the
completion is what every loss reads), and completions longer than seq_len - 1 lose their end.
"""
from __future__ import annotations

import dataclasses
import io
import pathlib
import tempfile
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from caujax.data.items import require, row_error
from caujax.data.pairs import KTOExample, Preference

Ids = list[int]


class RowShare(NamedTuple):
    """Which rows of a global batch this process builds: part `index` of `count` equal, contiguous parts of every
    row dimension, the part its devices hold along the mesh's batch axes (sharding.row_share). RowShare() is all
    rows, as one process builds them. Widths (pad columns, loss window) are still those of the whole batch, so every
    process compiles the same shapes and the rows equal the matching rows of the one-process batch."""
    index: int = 0
    count: int = 1

    def rows(self, n: int) -> range:
        """The row indices of a dimension of `n` global rows that this process builds; ValueError when `count` does
        not divide `n` (the trainer checks batch_size against the mesh before any batch is built)."""
        if n % self.count:
            raise ValueError(f"{n} rows do not split into {self.count} equal per-process parts")
        k = n // self.count
        return range(self.index * k, (self.index + 1) * k)

    def take(self, rows: Sequence) -> list:
        return [rows[i] for i in self.rows(len(rows))]

    @classmethod
    def of_blocks(cls, held: Sequence[int], ways: int) -> RowShare:
        """The share of a process that holds row blocks `held` of `ways` equal blocks: its part when they are
        contiguous and the same count on every process (what jax.make_mesh gives a pod or a GPU cluster: a host's
        devices are neighbours on the batch axes); else RowShare() (all rows: the host builds the whole batch)."""
        held = sorted(set(held))
        n = len(held)
        if not n or n == ways or ways % n or held[0] % n or held != list(range(held[0], held[0] + n)):
            return cls()
        return cls(held[0] // n, ways // n)


@dataclasses.dataclass(frozen=True)
class SFTExample:
    id: str
    prompt: str          # the user message; the chat template is applied at tokenization
    completion: str


# --- rows in the method formats (what `python -m caujax.data convert --to sft|dpo|kto` writes) ------------------
FIELDS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected"), "kto": ("prompt", "completion")}


def read_examples(path, method: str) -> list[SFTExample | Preference | KTOExample]:
    """Training rows of one method from a .jsonl/.json file; a row missing a field, with an empty one, or (KTO)
    without a boolean `label` raises RowError naming the file, the row and the field."""
    from caujax.data.items import read_rows      # deferred: it imports `datasets`

    rows = read_rows(path)
    if not rows:
        raise ValueError(f"{path}: no rows")
    out = []
    for i, row in enumerate(rows):
        values = [require(row, key, str, path, i) for key in FIELDS[method]]
        for key, value in zip(FIELDS[method], values):
            if not value.strip():
                raise row_error(path, i, f"field {key!r} is empty")
        row_id = str(row.get("id") or f"row_{i}")
        if method == "sft":
            out.append(SFTExample(row_id, *values))
        elif method == "dpo":
            out.append(Preference(row_id, *values))
        else:
            out.append(KTOExample(row_id, *values, label=require(row, "label", bool, path, i)))
    return out


# --- tokenization ---------------------------------------------------------------------------------------------------
def encode(tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> list[tuple[Ids, Ids]]:
    """(prompt ids, completion ids + EOS) per example; prompts go through the chat template as one user turn."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token; completions must end with one")
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    return [(list(p), list(c) + [tokenizer.eos_token_id]) for p, c in zip(prompt_ids, completion_ids)]


def fit(prompt: Ids, completion: Ids, seq_len: int) -> tuple[Ids, Ids]:
    """Cut a row to seq_len tokens: the completion keeps its start, the prompt keeps its end (at least 1 token,
    whose log-prob column scores the first completion token)."""
    completion = completion[: seq_len - 1]
    room = seq_len - len(completion)
    return prompt[max(len(prompt) - room, 0):], completion


def batch_width(lengths: Sequence[int], seq_len: int, multiple: int) -> int:
    """Columns of a batch: its longest row rounded up to a multiple of `multiple` (one compiled shape per multiple,
    at most seq_len / multiple of them), capped at seq_len; multiple = 0 pads every batch to seq_len."""
    if not multiple:
        return seq_len
    return min(seq_len, -(-max(max(lengths, default=1), 1) // multiple) * multiple)


def pad_rows(pairs: Sequence[tuple[Ids, Ids]], seq_len: int, pad_id: int, width: int | None = None
             ) -> dict[str, np.ndarray]:
    """tokens_BT, mask_BT, loss_mask_BT (aligned with log-probs: column t is 1 when token t+1 is a completion
    token): each row cut to seq_len (`fit`), right-padded to `width` columns (default seq_len)."""
    B, width = len(pairs), width or seq_len
    tokens = np.full((B, width), pad_id, np.int32)
    mask = np.zeros((B, width), np.int32)
    loss_mask = np.zeros((B, width), np.int32)
    for i, (prompt, completion) in enumerate(pairs):
        prompt, completion = fit(prompt, completion, seq_len)
        P, C = len(prompt), len(completion)
        tokens[i, : P + C] = prompt + completion
        mask[i, : P + C] = 1
        loss_mask[i, P - 1: P + C - 1] = 1
    return {"tokens_BT": tokens, "mask_BT": mask, "loss_mask_BT": loss_mask}


def loss_positions(loss_mask_BT: np.ndarray, multiple: int, most: int | None = None) -> np.ndarray:
    """loss_index_BW: each row's loss columns (where loss_mask_BT is 1), in order, then -1; W is the batch's most
    such columns rounded up to `multiple` (one compiled shape per multiple), capped at T. The SFT objective reads
    the log-probs of these columns only (losses/sft.py), so the [V x D] projection skips the prompt and padding.
    most: the whole batch's most loss columns in a row, when `loss_mask_BT` holds only this process's rows."""
    T = loss_mask_BT.shape[1]
    counts = loss_mask_BT.astype(bool).sum(1)
    most = int(counts.max(initial=1)) if most is None else most
    W = min(T, max(-(-most // multiple) * multiple, 1))
    mask = loss_mask_BT.astype(bool)
    first_BW = np.argsort(~mask, axis=1, kind="stable")[:, :W]       # each row's loss columns first, in order
    return np.where(np.take_along_axis(mask, first_BW, axis=1), first_BW, -1).astype(np.int32)


def fitted_length(prompt: Ids, completion: Ids, seq_len: int) -> int:
    return min(len(prompt) + len(completion), seq_len)


def loss_columns(prompt: Ids, completion: Ids, seq_len: int) -> int:
    """How many loss_mask_BT columns pad_rows sets for this row (its completion tokens after `fit`)."""
    return len(fit(prompt, completion, seq_len)[1])


# --- rows that carry no preference ----------------------------------------------------------------------------------
def preference_rows(rows: Sequence[tuple[Ids, Ids, Ids]], seq_len: int, source: str) -> list[tuple[Ids, Ids, Ids]]:
    """The DPO rows (prompt ids, chosen ids, rejected ids) whose two sides differ once fitted to seq_len (`fit`: what
    the loss reads), in order. A pair whose sides are the same tokens, as given or after truncation, trains nothing:
    its two rows have the same log-probs whatever the weights, so its margin is 0, its loss ln 2 (sigmoid; a
    constant for IPO and hinge too) and its gradient 0. Such pairs are dropped with one warning that counts them.

    Raises ValueError naming `source` (data.source) when no pair is left."""
    kept, same_given, same_cut = [], 0, 0
    for prompt, chosen, rejected in rows:
        if chosen == rejected:
            same_given += 1
        elif fit(prompt, chosen, seq_len) == fit(prompt, rejected, seq_len):
            same_cut += 1
        else:
            kept.append((prompt, chosen, rejected))
    what = (f"chosen and rejected completions are the same tokens ({same_given} as given, {same_cut} once cut to "
            f"data.seq_len={seq_len})")
    return _kept_or_refused(kept, len(rows), source, "DPO pairs", f"{what}: such a pair carries no preference "
                            "(loss ln 2, gradient 0); give pairs whose completions differ within data.seq_len tokens")


def consistent_kto_rows(rows: Sequence[tuple[Ids, Ids, bool]], seq_len: int, source: str
                        ) -> list[tuple[Ids, Ids, bool]]:
    """The KTO rows (prompt ids, completion ids, label) whose fitted (prompt, completion) is not also given with the
    other label, in order. KTO rows are unpaired, so a row alone always carries signal (its Δ against z0); the one
    way a KTO set carries no preference is a completion that is both desirable and undesirable for its prompt, e.g.
    the two sides of a DPO pair made identical by truncation (kto_examples splits pairs). Its two losses then sum
    to 1 - σ(β(Δ - z0)) + 1 - σ(β(z0 - Δ)) = 1 whatever Δ: no gradient together, and opposite pushes apart.
    Every copy of such a completion is dropped, with one warning that counts the rows.

    Raises ValueError naming `source` (data.source) when no row is left."""
    keys = [tuple(map(tuple, fit(prompt, completion, seq_len))) for prompt, completion, _ in rows]
    labels: dict[tuple, set[bool]] = {}
    for key, (_, _, label) in zip(keys, rows):
        labels.setdefault(key, set()).add(bool(label))
    kept = [row for key, row in zip(keys, rows) if len(labels[key]) == 1]
    what = (f"completion (as cut to data.seq_len={seq_len}) is given for the same prompt as both desirable and "
            f"undesirable")
    return _kept_or_refused(kept, len(rows), source, "KTO rows", f"{what}: they carry no preference")


def _kept_or_refused(kept: list, total: int, source: str, rows: str, why: str) -> list:
    """kept, after one warning counting the dropped rows; ValueError naming `source` when none is kept."""
    if not kept:
        raise ValueError(f"data.source={source!r}: none of its {total} {rows} carries a preference; each one's {why}")
    if len(kept) < total:
        warnings.warn(f"data.source={source!r}: dropped {total - len(kept)} of {total} {rows} whose {why}",
                      stacklevel=3)
    return kept


# --- the three batch layouts (losses/common.py) ----------------------------------------------------------------------
# Each layout is computed over the whole batch (widths, the KTO rotation) and built for `share`'s rows only.
def sft_batch(rows, seq_len: int, pad_id: int, multiple: int = 0, share: RowShare = RowShare()
              ) -> dict[str, np.ndarray]:
    """rows: (prompt ids, completion ids)."""
    width = batch_width([fitted_length(*r, seq_len) for r in rows], seq_len, multiple)
    return pad_rows(share.take(rows), seq_len, pad_id, width)


def dpo_batch(rows, seq_len: int, pad_id: int, multiple: int = 0, share: RowShare = RowShare()
              ) -> dict[str, np.ndarray]:
    """rows: (prompt ids, chosen ids, rejected ids) -> 2B rows, [chosen; rejected], pair i = rows i and B+i."""
    pairs = [(p, c) for p, c, _ in rows] + [(p, r) for p, _, r in rows]
    width = batch_width([fitted_length(*r, seq_len) for r in pairs], seq_len, multiple)
    return pad_rows(share.take(pairs), seq_len, pad_id, width)


def kto_batch(rows, seq_len: int, pad_id: int, kl_group: int, multiple: int = 0, share: RowShare = RowShare()
              ) -> dict[str, np.ndarray]:
    """rows: (prompt ids, completion ids, label). The KL rows pair prompt i with the completion of row i-1 within
    each group of kl_group consecutive rows (TRL's rotate-by-one within a per-device batch). Both halves share one
    width, so a step compiles once per width."""
    if len(rows) % kl_group or kl_group < 2:
        raise ValueError(f"KTO needs kl_group >= 2 dividing the {len(rows)} rows, got kl_group={kl_group}")
    pairs = [(p, c) for p, c, _ in rows]
    rotated = [(rows[g + i][0], rows[g + (i - 1) % kl_group][1]) for g in range(0, len(rows), kl_group)
               for i in range(kl_group)]
    width = batch_width([fitted_length(*r, seq_len) for r in pairs + rotated], seq_len, multiple)
    batch = pad_rows(share.take(pairs), seq_len, pad_id, width)
    kl = pad_rows(share.take(rotated), seq_len, pad_id, width)
    batch.update({f"kl_{k}": v for k, v in kl.items()})
    batch["label_B"] = np.array([int(label) for _, _, label in share.take(rows)], np.int32)
    return batch


class Batches:
    """Endless shuffled batches of `batch_size` examples; every epoch is a fresh permutation drawn from (seed,
    epoch), so `position()` -> `Batches(..., position=...)` continues exactly where a run stopped."""

    def __init__(self, rows: Sequence, batch_size: int, seed: int, collate: Callable[[list], dict],
                 position: dict | None = None):
        if len(rows) < batch_size:
            raise ValueError(f"{len(rows)} training examples are fewer than one batch of {batch_size}")
        self.rows, self.batch_size, self.seed, self.collate = rows, batch_size, seed, collate
        self.per_epoch = len(rows) // batch_size          # the last partial batch is dropped: one static batch size
        position = position or {"epoch": 0, "batch": 0}
        self.epoch, self.batch = int(position["epoch"]), int(position["batch"])

    def position(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.rows))
        picked = order[self.batch * self.batch_size: (self.batch + 1) * self.batch_size]
        self.batch += 1
        if self.batch == self.per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return self.collate([self.rows[i] for i in picked])


# --- the tiny tokenizer ----------------------------------------------------------------------------------------------
ROLES = ("<|user|>", "<|assistant|>")
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A BPE SentencePiece model trained on `texts` in memory (well under a second for a few hundred problems),
    wrapped as a transformers tokenizer: pad 0, unk 1, bos 2, eos 3, the two role markers, a jinja chat template.
    Raises ValueError naming --model.arch.vocab_size when the text cannot make `vocab_size` pieces, or needs more.

    transformers 5 encodes everything to [] when LlamaTokenizer is built from `vocab_file=`, so the model is
    written as tokenizer.model into a directory and loaded with from_pretrained, as a checkpoint's would be."""
    import sentencepiece as spm
    import transformers

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type="bpe",
            character_coverage=1.0, pad_id=0, unk_id=1, bos_id=2, eos_id=3, user_defined_symbols=list(ROLES),
            normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
            max_sentence_length=1 << 16, num_threads=1, minloglevel=2)
    except RuntimeError as e:        # SentencePiece's message names its own flags, not ours
        raise ValueError(f"cannot train a {vocab_size}-piece tokenizer on the run's text ({str(e).strip()}); set "
                         f"--model.arch.vocab_size to fit the text (at least one piece per distinct character, at "
                         f"most what the text can make), or give --model.tokenizer") from None
    with tempfile.TemporaryDirectory(prefix="caujax-spm-") as tmp:
        (pathlib.Path(tmp) / "tokenizer.model").write_bytes(model.getvalue())
        tokenizer = transformers.LlamaTokenizer.from_pretrained(tmp)
    tokenizer.pad_token = "<pad>"
    tokenizer.add_bos_token = False          # the chat template marks the start; no BOS inside rows
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
