"""Online RL batches: prompts -> G completions each from the jitted KV-cache sampler -> rewards -> advantages -> the
GRPO / PPO training batch (losses/common.py layout), behind the same BatchSource interface as fixed data.

One rollout feeds `steps_per_rollout` = passes x mini-batches optimizer steps (GRPO num_iterations x mini_batches,
PPO ppo_epochs x mini_batches): it samples mini_batches x data.batch_size completions, and each optimizer step takes
one data.batch_size slice of them, in order, pass after pass. The old log-probs log π_old are recomputed by the
trainer's own forward pass at rollout time only when the batch is reused (otherwise π_old = sg(π_θ) in the loss,
TRL's on-policy shortcut); the sampler's log q are always kept, so the agreement between the two is logged each step.

The policy's weights reach the sampler without a copy: `nnx.merge(graphdef, state.params)` wraps the train state's
own arrays; with fsdp > 1 the sampler's layout (whole weights per data shard, sharding.SAMPLE_RULES) is a resharded
copy that lives for the rollout only.

Determinism: prompts come from a seeded per-epoch shuffle (data.batches.Batches) and rollout k samples with the
key (data.seed, k, round), so a resumed run draws the same rollouts as an uninterrupted one from the same weights.
"""
from __future__ import annotations

import copy
import json
import pathlib
import time
import warnings

import jax
import numpy as np
from flax import nnx

from caujax import scoring
from caujax.data import batches as fixed
from caujax.data.examples import RLExample, SourceContext
from caujax.metrics_log import truncate
from caujax.rl import advantages as adv
from caujax.rl.rewards import RewardSet, causal_reward
from caujax.sampling.methods import SamplingParams
from caujax.sampling.sampler import end_ids, sample_ids
from caujax.sharding import fetch_global
from caujax.step import place_batch

STUCK_FRACTION = 0.95       # a rollout is "stuck" when this share of completions is truncated or of groups flat


class RolloutStuck(ValueError):
    """Training cannot learn: almost every completion is truncated, or almost every group has one reward."""


class RolloutSource:
    """The BatchSource of GRPO and PPO (data/examples.py). `method` is "grpo" or "ppo"; `_method_fields` is where
    the two differ."""

    fixed = False

    def __init__(self, examples: list[RLExample], tokenizer, ctx: SourceContext, position: dict | None, method: str):
        cfg = ctx.cfg
        self.examples, self.tokenizer, self.ctx, self.method = examples, tokenizer, ctx, method
        self.params = getattr(cfg, method)
        ro = self.params.rollout
        self.ro, self.G = ro, ro.n
        self.steps_per_rollout = self.params.steps_per_rollout
        self.rows = cfg.data.batch_size * self.params.mini_batches        # completions per rollout
        _check_schedule(cfg, method, self.rows, self.G, self.steps_per_rollout)
        self.seq_len = ro.max_prompt_length + ro.max_completion_length
        self.prompt_ids = encode_prompts(tokenizer, examples, ro.max_prompt_length, f"{method}.rollout")
        # A template that opens <think> in the prompt (R1-Distill) starts every completion inside its thinking: the
        # rewards must know, or a completion cut before </think> (no tag at all) reads as a final answer.
        self.opened = prompts_open_thinking(tokenizer, self.prompt_ids)
        self.eos_ids = None           # the model's own end ids (sampler.end_ids), known at the first rollout
        self.pad_id = tokenizer.pad_token_id or 0
        self.rewards = RewardSet.from_params(ro)
        self.run_dir = pathlib.Path(cfg.run_dir)
        self._scorers = {}
        self._start(position)

    def _start(self, position: dict | None) -> None:
        """The state that a position fixes: prompt order, rollout count, stuck count; no rollout buffered."""
        position = position or {}
        self.k, self.stuck = int(position.get("rollouts", 0)), int(position.get("stuck", 0))
        self.prompts = fixed.Batches(list(range(len(self.examples))), self.rows // self.G, self.ctx.cfg.data.seed,
                                     list, position.get("prompts"))
        self.buffer, self.j = None, 0
        self.last, self.seconds, self.sampled_tokens = {}, 0.0, 0
        if self.k and jax.process_index() == 0:      # a resumed run redraws the rollouts after its checkpoint
            truncate(self.run_dir / "rollouts.jsonl", self.k * self.steps_per_rollout)

    # --- BatchSource --------------------------------------------------------------------------------------------
    def next(self, policy) -> dict[str, np.ndarray]:
        if self.buffer is None:
            self.buffer = self._rollout(policy)
        B = self.ctx.cfg.data.batch_size
        mb = self.j % self.params.mini_batches
        batch = {k: v[mb * B:(mb + 1) * B] for k, v in self.buffer.items()}
        self.j += 1
        if self.j == self.steps_per_rollout:
            self.buffer, self.j = None, 0
        return batch

    def position(self) -> dict:
        if self.j:      # _check_schedule keeps checkpoints on rollout boundaries
            raise RuntimeError(f"checkpoint inside rollout {self.k} (step {self.j} of {self.steps_per_rollout})")
        return {"prompts": self.prompts.position(), "rollouts": self.k, "stuck": self.stuck}

    def restart(self, position: dict | None) -> RolloutSource:
        """A source at `position` sharing this one's encoded prompts, rewards and compiled scorers."""
        source = copy.copy(self)
        source._start(position)
        return source

    def metrics(self) -> dict[str, float]:
        """The latest rollout's statistics, and rollout seconds / sampled tokens per second since the last call."""
        out = dict(self.last, rollout_s=self.seconds,
                   rollout_tokens_per_s=self.sampled_tokens / max(self.seconds, 1e-9))
        self.seconds, self.sampled_tokens = 0.0, 0
        return out

    # --- one rollout --------------------------------------------------------------------------------------------
    def _rollout(self, policy) -> dict[str, np.ndarray]:
        from caujax.rl.critic import policy_of

        t0 = time.perf_counter()
        model = nnx.merge(policy.graphdef, policy.state.params)
        decoder = policy_of(model)
        if self.eos_ids is None:
            self.eos_ids = end_ids(decoder.cfg, self.tokenizer)
        groups_needed = self.rows // self.G
        dynamic = getattr(self.params, "dynamic_sampling", False)
        kept, sampled, flats, rounds = [], [], [], 0
        while True:
            picked = next(self.prompts)
            group = self._sample_groups(decoder, picked, rounds)
            flat = np.asarray(adv.zero_spread(group["reward_R"], self.G)) if self.G > 1 else np.zeros(len(picked), bool)
            sampled.append(group)
            flats.append(flat)
            keep = ~flat if dynamic else np.ones(len(picked), bool)
            kept += [_take_group(group, g, self.G) for g in np.flatnonzero(keep)]
            if not dynamic or len(kept) >= groups_needed or rounds >= self.params.max_resample_rounds:
                break
            rounds += 1
        kept = kept[:groups_needed]
        filler = groups_needed - len(kept)
        batch, fields_stats = self._batch(policy, _concat(kept) if kept else None, filler)
        # What the policy did is measured on everything sampled (every round), not only on the groups kept for the
        # loss: dynamic sampling keeps the informative groups, so their reward and accuracy are biased.
        everything = _concat(sampled)
        stats = _stats(everything) | fields_stats | {
            "zero_spread_fraction": float(np.concatenate(flats).mean()), "resample_rounds": rounds,
            "filler_rows": filler * self.G, "kept_fraction": len(kept) * self.G / self.rows,
            "batch_columns": batch["tokens_BT"].shape[1]}     # the update's row width (data.pad_multiple)
        if filler * 2 > groups_needed:
            warnings.warn(f"rollout {self.k + 1}: only {len(kept)} of {groups_needed} groups had any reward spread "
                          f"after {rounds} extra rounds; the step trains on {len(kept) * self.G} completions and "
                          f"{filler * self.G} filler rows with no loss (see zero_spread_fraction)", stacklevel=2)
        self._check_stuck(stats)
        self._write_table(everything)
        self.k += 1
        self.seconds += time.perf_counter() - t0
        self.last = stats
        return batch

    def _sample_groups(self, decoder, picked: list[int], round_: int) -> dict:
        ro = self.ro
        params = SamplingParams(n=self.G, temperature=ro.temperature, top_p=ro.top_p, top_k=ro.top_k,
                                max_new_tokens=ro.max_completion_length,
                                seed=int(np.random.SeedSequence([self.ctx.cfg.data.seed, self.k, round_])
                                         .generate_state(1)[0] >> 1))
        out = sample_ids(decoder, [self.prompt_ids[i] for i in picked], params, eos_ids=self.eos_ids,
                         pad_id=self.pad_id, mesh=self.ctx.mesh)
        self.sampled_tokens += int(out.lengths.sum())
        rows = [i for i in picked for _ in range(self.G)]
        completions = [out.tokens[r, :out.lengths[r]].tolist() for r in range(len(rows))]
        texts = [self.tokenizer.decode([t for t in c if t not in self.eos_ids], skip_special_tokens=True)
                 for c in completions]
        examples = [self.examples[i] for i in rows]
        prompts, items = [e.prompt for e in examples], [e.item for e in examples]
        opened = [self.opened[i] for i in rows]
        total, terms = self.rewards(prompts, texts, items, lengths=out.lengths, truncated=~out.done, opened=opened)
        # Strict accuracy is the "causal" reward's verdict: reuse it when that reward is in the set.
        correct = (terms["causal"] if "causal" in terms
                   else np.asarray(causal_reward(prompts, texts, items, opened=opened)))
        return {"correct_R": correct, "example_R": np.asarray(rows), "completion_R": completions, "text_R": texts,
                "sampler_logp_R": [out.logp[r, :out.lengths[r]] for r in range(len(rows))],
                "floor_R": [out.floor[r, :out.lengths[r]] for r in range(len(rows))],
                "reward_R": np.asarray(total, np.float64), "terms": terms, "done_R": np.asarray(out.done),
                "length_R": np.asarray(out.lengths)}

    def _batch(self, policy, rows: dict | None, filler_groups: int) -> tuple[dict, dict]:
        """Token rows in the common.py layout, the method's fields, and the method's rollout statistics."""
        R = self.rows
        n_real = 0 if rows is None else len(rows["example_R"])
        pairs = [(self.prompt_ids[i], c) for i, c in zip(rows["example_R"], rows["completion_R"])] if n_real else []
        # Filler rows (dynamic sampling's partial batch) repeat a real row's tokens with no loss: a fully padded row
        # would give attention nothing to attend to.
        pairs += [pairs[0] if pairs else ([self.pad_id], [])] * (R - n_real)
        # The rollout's longest row rounded up to data.pad_multiple, as SFT batches: every process holds the whole
        # rollout, so all agree on the width, and the update and the scoring passes skip the unused columns.
        T = fixed.batch_width([len(p) + len(c) for p, c in pairs], self.seq_len, self.ctx.cfg.data.pad_multiple)
        batch = fixed.pad_rows(pairs, self.seq_len, self.pad_id, width=T)    # the SFT row layout; nothing is cut
        loss_mask = batch["loss_mask_BT"]
        loss_mask[n_real:] = 0
        # The sampler's per-token numbers sit in the loss-mask columns: token t+1's log-prob in column t.
        sampler_logp = np.zeros((R, T), np.float32)
        floor = np.full((R, T), -np.inf, np.float32)
        for r in range(n_real):
            cols = np.flatnonzero(loss_mask[r])
            sampler_logp[r, cols], floor[r, cols] = rows["sampler_logp_R"][r], rows["floor_R"][r]
        reward = np.zeros(R) if not n_real else np.concatenate([rows["reward_R"], np.zeros(R - n_real)])
        done = np.ones(R, bool) if not n_real else np.concatenate([rows["done_R"], np.ones(R - n_real, bool)])
        if self.ro.mask_truncated_completions:
            loss_mask[~done] = 0
        if self.method == "grpo" and self.ctx.cfg.data.loss_window:       # the vocabulary at completion columns only
            batch["loss_index_BW"] = fixed.loss_positions(loss_mask, self.ctx.cfg.data.loss_window)
        batch["sampler_logp_BT"] = sampler_logp
        if self.ro.top_k or self.ro.top_p < 1.0:      # the trainer renormalises over the sampler's support
            batch["support_floor_BT"] = floor
        fields, extra = self._method_fields(policy, batch, reward, done, n_real)
        return batch | fields, extra

    def _method_fields(self, policy, batch, reward, done, n_real) -> tuple[dict[str, np.ndarray], dict]:
        p, G = self.params, self.G
        real = np.arange(self.rows) < n_real
        if self.method == "grpo":
            r = np.where(real, reward, np.nan)       # NaN rows (fillers) leave the group statistics, advantage 0
            if p.advantage_estimator == "rloo":
                a = adv.rloo_advantages(np.nan_to_num(r), G)
            else:
                a = adv.group_advantages(r, G, scale=p.scale_rewards, ddof=p.std_ddof, epsilon=p.advantage_epsilon)
            out = {"advantage_B": np.where(real, np.asarray(a, np.float32), 0.0).astype(np.float32)}
            if not p.on_policy:
                out |= self._score(policy, batch, "old")
            return out, {}
        # PPO: π_old and V_old by the trainer, π_ref for the KL penalty in the reward, then GAE.
        from caujax.rl.shaping import ppo_fields
        scored = self._score(policy, batch, "ppo")
        ref = self._score(policy, batch, "ref") if self.ctx.reference is not None else None
        return ppo_fields(batch, scored, ref, reward, done, p)

    def _score(self, policy, batch: dict, kind: str) -> dict[str, np.ndarray]:
        """Trainer-side fields of the rollout batch, one optimizer batch at a time, micro-batch by micro-batch
        (step.reference_fields, so the forward is the step's own): "old" log π_old, "ppo" log π_old and V_old,
        "ref" log π_ref (`policy` is the current one in every case: a LoRA run's π_ref is it, adapters off)."""
        from caujax.rl.logprobs import scorer

        if kind == "ref":
            graphdef, params = self.ctx.reference
            if params is None:          # a LoRA run: π_ref is the policy decoder with its adapters off
                from caujax.models.lora import adapter_off
                from caujax.rl.critic import policy_of
                params = adapter_off(nnx.state(policy_of(nnx.merge(policy.graphdef, policy.state.params))))
        else:
            graphdef, params = policy.graphdef, policy.state.params
        fn = self._scorers.get(kind) or self._scorers.setdefault(
            kind, scorer(kind, graphdef, self.ctx.mesh, self.ctx.cfg.data.num_micro_batches, self.ro.temperature))
        B = self.ctx.cfg.data.batch_size
        inputs = ("tokens_BT", "mask_BT", "support_floor_BT")
        parts = [fn(params, place_batch({k: v[i:i + B] for k, v in batch.items() if k in inputs}, self.ctx.mesh))
                 for i in range(0, self.rows, B)]
        parts = [jax.tree.map(fetch_global, part) for part in parts]
        return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

    def _check_stuck(self, stats: dict) -> None:
        limit = self.ro.stuck_rollouts
        flat = stats.get("zero_spread_fraction", 0.0) >= STUCK_FRACTION and self.G > 1
        cut = stats.get("truncated_fraction", 0.0) >= STUCK_FRACTION
        self.stuck = self.stuck + 1 if (flat or cut) else 0
        if limit and self.stuck >= limit:
            s = f"{self.method}.rollout"
            if cut:
                what = (f"{stats['truncated_fraction']:.0%} of completions hit {s}.max_completion_length="
                        f"{self.ro.max_completion_length}")
                fix = f"raise {s}.max_completion_length, or check that the prompts ask for a short final answer"
            else:
                what = (f"{stats['zero_spread_fraction']:.0%} of groups gave all {self.G} completions the same "
                        f"reward (no advantage, no gradient)")
                fix = (f"use an easier data.source or a denser reward ({s}.rewards), more completions per prompt "
                       f"({s}.n), or a model that already answers some questions right (SFT first)")
            raise RolloutStuck(
                f"rollout {self.k + 1} (1-based): {what}, for {self.stuck} rollouts in a row ({s}.stuck_rollouts="
                f"{limit}, 0 turns the check off). To go on: {fix}. Those settings make it another run: start a new "
                f"run_dir from the base model; the checkpoints in run_dir are kept")

    def _write_table(self, rows: dict) -> None:
        every = self.ro.log_every
        if not every or self.k % every or jax.process_index() != 0:
            return
        step = self.k * self.steps_per_rollout + 1         # the first optimizer step trained on this rollout
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "rollouts.jsonl", "a") as f:
            for r, i in enumerate(rows["example_R"]):
                ex = self.examples[i]
                f.write(json.dumps({"step": step, "rollout": self.k, "id": ex.id, "prompt": ex.prompt,
                                    "completion": rows["text_R"][r], "reward": float(rows["reward_R"][r]),
                                    **{f"reward/{k}": float(v[r]) for k, v in rows["terms"].items()},
                                    "tokens": int(rows["length_R"][r]), "truncated": not bool(rows["done_R"][r]),
                                    "answer": ex.answer}) + "\n")


def validate(cfg, examples: list[RLExample], tokenizer) -> None:
    """The checks a RolloutSource makes, run by train.py before the model loads (minutes for a 14B model): the
    schedule, the reward functions (names, reward file) and every prompt's length."""
    params = getattr(cfg, cfg.method)
    _check_schedule(cfg, cfg.method, cfg.data.batch_size * params.mini_batches, params.rollout.n,
                    params.steps_per_rollout)
    RewardSet.from_params(params.rollout)
    prompts_open_thinking(tokenizer, encode_prompts(tokenizer, examples, params.rollout.max_prompt_length,
                                                    f"{cfg.method}.rollout"))


def grpo_batches(examples, tokenizer, ctx: SourceContext, position: dict | None = None) -> RolloutSource:
    return RolloutSource(examples, tokenizer, ctx, position, "grpo")


def ppo_batches(examples, tokenizer, ctx: SourceContext, position: dict | None = None) -> RolloutSource:
    return RolloutSource(examples, tokenizer, ctx, position, "ppo")


def encode_prompts(tokenizer, examples: list[RLExample], max_prompt_length: int, where: str) -> list[list[int]]:
    """Chat-templated prompt ids (the path SFT rows take, data/batches.encode); a prompt over max_prompt_length is
    refused by name: cutting it would drop the question, and the KV cache is sized from this limit."""
    ids = [p for p, _ in fixed.encode(tokenizer, [e.prompt for e in examples], [""] * len(examples))]
    long = [(len(p), e.id) for e, p in zip(examples, ids) if len(p) > max_prompt_length]
    if long:
        longest, first = max(long), long[0]
        raise ValueError(f"{len(long)} of {len(ids)} prompts are longer than {where}.max_prompt_length="
                         f"{max_prompt_length} tokens (the KV cache holds prompt + completion): the first is "
                         f"prompt {first[1]!r} with {first[0]} tokens, the longest {longest[1]!r} with {longest[0]}. "
                         f"Set {where}.max_prompt_length={longest[0]} to keep them all, or drop those rows")
    return ids


def prompts_open_thinking(tokenizer, prompt_ids: list[list[int]]) -> list[bool]:
    """Per prompt: does the templated prompt, as the model reads it, leave the completion inside `<think>`
    (scoring.prompt_opens_thinking on its decoded ids)? Raises ValueError when one does and the completions'
    decoding (skip_special_tokens=True) would drop the `</think>` that ends the thinking."""
    opened = [scoring.prompt_opens_thinking(tokenizer.decode(ids)) for ids in prompt_ids]
    if any(opened):
        scoring.check_tags_survive_decoding(tokenizer)
    return opened


def _check_schedule(cfg, method: str, rows: int, G: int, spr: int) -> None:
    if rows % G:
        raise ValueError(f"{method}: data.batch_size x mini_batches = {rows} completions per rollout is not a multiple "
                         f"of {method}.rollout.n={G} (whole groups)")
    for name, value in (("steps", cfg.steps), ("checkpoint.every_steps", cfg.checkpoint.every_steps)):
        if value % spr:
            passes = "num_iterations" if method == "grpo" else "ppo_epochs"
            raise ValueError(f"{name}={value} is not a multiple of the {spr} optimizer steps each {method} rollout "
                             f"feeds ({method}.{passes} x {method}.mini_batches): checkpoints must fall between "
                             f"rollouts; use {name}={max(spr, value // spr * spr)} or {(value // spr + 1) * spr}")


def _take_group(group: dict, g: int, G: int) -> dict:
    sl = slice(g * G, (g + 1) * G)
    out = {k: (v[sl] if not isinstance(v, dict) else {n: t[sl] for n, t in v.items()}) for k, v in group.items()}
    return out


def _concat(groups: list[dict]) -> dict:
    out = {}
    for k, v in groups[0].items():
        if isinstance(v, dict):
            out[k] = {n: np.concatenate([g[k][n] for g in groups]) for n in v}
        elif isinstance(v, list):
            out[k] = [x for g in groups for x in g[k]]
        else:
            out[k] = np.concatenate([g[k] for g in groups])
    return out


def _stats(rows: dict) -> dict[str, float]:
    """Host statistics of everything a rollout sampled (every dynamic-sampling round, kept or not)."""
    reward, lengths = rows["reward_R"], rows["length_R"]
    out = {"reward_mean": float(np.nanmean(reward)), "reward_std": float(np.nanstd(reward)),
           "completion_length": float(lengths.mean()), "completion_length_max": float(lengths.max()),
           "truncated_fraction": float(1.0 - rows["done_R"].mean())}
    for name, values in rows["terms"].items():
        out[f"reward/{name}"] = float(np.nanmean(values))
    out["accuracy"] = float(rows["correct_R"].mean())     # the strict scorer's verdict (scoring.py)
    return out
