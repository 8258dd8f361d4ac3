"""GRPO and PPO through `python -m caujax.train` on the tiny presets (configs/tiny_grpo.py, tiny_ppo.py): they learn
the toy copy task, the sampler and the trainer agree on log-probs, a step is the same on 8 devices and in
micro-batches, stored old log-probs are used when a rollout is reused, a killed run resumes with the same rollouts,
and bad input fails by name while the run directory keeps what it had."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from caujax import train
from caujax.data.items import RowError

REPO = pathlib.Path(__file__).resolve().parent.parent
TIMING = ("tokens_per_s", "rollout_s", "rollout_tokens_per_s", "update_s", "update_tokens_per_s")
LEARN_STEPS = 40


def _run(preset, run_dir, *extra):
    return train.main(["--config", str(REPO / "configs" / preset), f"--run_dir={run_dir}", "--export=false", *extra])


def _mean(lines, key, sl):
    return float(np.mean([l[key] for l in lines[sl]]))


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("grpo")
    return run_dir, _run("tiny_grpo.py", run_dir, f"--steps={LEARN_STEPS}", f"--checkpoint.every_steps={LEARN_STEPS}")


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ppo")
    return run_dir, _run("tiny_ppo.py", run_dir, f"--steps={LEARN_STEPS}", f"--checkpoint.every_steps={LEARN_STEPS}")


# --- learning -----------------------------------------------------------------------------------------------------
def test_grpo_raises_the_mean_reward_of_the_copy_task(grpo_run):
    """Seeded, so the numbers are the same on every run; the threshold is loose (measured: about 0.07 -> 0.19)."""
    _, lines = grpo_run
    first, last = _mean(lines, "reward_mean", slice(0, 8)), _mean(lines, "reward_mean", slice(-8, None))
    print(f"grpo mean reward: first 8 steps {first:.3f}, last 8 steps {last:.3f}")
    assert last > first + 0.05 and last > 1.5 * first
    assert _mean(lines, "entropy", slice(-4, None)) < _mean(lines, "entropy", slice(0, 4))


def test_ppo_raises_the_mean_reward_of_the_copy_task(ppo_run):
    _, lines = ppo_run
    first, last = _mean(lines, "reward_mean", slice(0, 8)), _mean(lines, "reward_mean", slice(-8, None))
    print(f"ppo mean reward: first 8 steps {first:.3f}, last 8 steps {last:.3f}")
    assert last > first + 0.04 and last > 1.5 * first        # measured 0.052 -> 0.133 (seed 1: 0.061 -> 0.127)
    assert all(np.isfinite(l["value_loss"]) for l in lines)


def test_rl_metrics_and_rollout_table(grpo_run, ppo_run):
    for run_dir, lines in (grpo_run, ppo_run):
        for key in ("reward_mean", "reward_std", "accuracy", "zero_spread_fraction", "completion_length",
                    "truncated_fraction", "entropy", "rollout_s", "update_s", "rollout_tokens_per_s",
                    "agreement/logp_gap_mean", "agreement/logp_gap_max", "agreement/is_weight_mean"):
            assert key in lines[0], key
        table = [json.loads(l) for l in (run_dir / "rollouts.jsonl").read_text().splitlines()]
        assert {"prompt", "completion", "reward", "step", "answer"} <= set(table[0])
        assert table[0]["prompt"].startswith("Copy the probability") and isinstance(table[0]["completion"], str)


def test_sampler_and_trainer_log_probs_agree_in_float32(grpo_run, ppo_run):
    """The logged gap is |log π_old - log q| over every completion token of every step: same weights, same
    temperature, one sampled from the KV cache and one recomputed by the training forward pass."""
    for _, lines in (grpo_run, ppo_run):
        assert max(l["agreement/logp_gap_max"] for l in lines) < 1e-5
        assert abs(_mean(lines, "agreement/is_weight_mean", slice(None)) - 1.0) < 1e-5


def test_on_policy_grpo_ratio_is_exactly_one(grpo_run):
    """num_iterations = 1: π_old = sg(π_θ), so no token is ever clipped."""
    _, lines = grpo_run
    assert all(l["clip_ratio/region_mean"] == 0.0 for l in lines)


# --- invariance ---------------------------------------------------------------------------------------------------
def _same_step(a: dict, b: dict, rtol: float):
    for key in ("loss", "grad_norm", "reward_mean", "count", "entropy"):
        assert np.isclose(a[key], b[key], rtol=rtol, atol=1e-7), (key, a[key], b[key])


def test_grpo_step_on_a_2x2x2_mesh_equals_one_device(grpo_run, tmp_path):
    """Rollout (sampler sharded over data x fsdp, heads over tensor) and update on 8 fake devices: the same
    completions, rewards and loss as the 1-device run's first step."""
    lines = _run("tiny_grpo.py", tmp_path, "--steps=1", "--mesh.data=2", "--mesh.fsdp=2", "--mesh.tensor=2")
    _same_step(lines[0], grpo_run[1][0], rtol=1e-5)


def test_ppo_step_on_a_2x2x2_mesh_equals_one_device(ppo_run, tmp_path):
    """PPO's rollout, value head and update on 8 fake devices (fsdp and tensor both 2): the first rollout's two
    optimizer steps (ppo_epochs x mini_batches) of the 1-device run."""
    lines = _run("tiny_ppo.py", tmp_path, "--steps=2", "--mesh.data=2", "--mesh.fsdp=2", "--mesh.tensor=2")
    for sharded, single in zip(lines, ppo_run[1][:2], strict=True):
        _same_step(sharded, single, rtol=1e-5)


def test_grpo_full_batch_equals_micro_batches(grpo_run, tmp_path):
    """The fixture accumulates 2 micro-batches of 8 completions; one batch of 16 gives the same step."""
    lines = _run("tiny_grpo.py", tmp_path, "--steps=1", "--data.micro_batch_size=16")
    _same_step(lines[0], grpo_run[1][0], rtol=1e-6)


def test_grpo_rows_trimmed_to_the_longest_equal_rows_of_seq_len(grpo_run, tmp_path):
    """data.pad_multiple=8: the rollout's rows are padded to its longest row rounded up to 8 (24 of the 40 columns
    of max_prompt_length + max_completion_length, as the fixture pads them); the same step."""
    lines = _run("tiny_grpo.py", tmp_path, "--steps=1", "--data.pad_multiple=8")
    assert grpo_run[1][0]["batch_columns"] == 40
    assert lines[0]["batch_columns"] % 8 == 0 and lines[0]["batch_columns"] < 40
    _same_step(lines[0], grpo_run[1][0], rtol=1e-5)


def test_grpo_loss_window_equals_every_column(grpo_run, tmp_path):
    """data.loss_window=8: the rollout batch carries its completion columns (loss_index_BW) and the update projects
    onto the vocabulary there only; the same completions, rewards, loss and gradient norm as the fixture's step."""
    lines = _run("tiny_grpo.py", tmp_path, "--steps=1", "--data.loss_window=8")
    _same_step(lines[0], grpo_run[1][0], rtol=1e-5)


# --- reused rollouts, a failing reward file, resume ----------------------------------------------------------------
REWARD_FILE = '''
import pathlib
from caujax.rl.rewards import copy_reward

def guarded_copy(prompts, completions, items):
    if pathlib.Path(__file__).with_suffix(".broken").exists():
        return [1.0 / 0.0 for _ in completions]
    return copy_reward(prompts, completions, items)
'''


def test_reused_rollout_uses_stored_old_logps_and_a_raising_reward_loses_nothing(tmp_path):
    """num_iterations = 2: the second step on a rollout reads the stored π_old, so its ratio moves off 1 after the
    first update; then a reward function that raises stops the
    resumed run with its name, and the checkpoints and metrics already written stay as they were."""
    reward_file = tmp_path / "my_rewards.py"
    reward_file.write_text(REWARD_FILE)
    run_dir = tmp_path / "run"
    args = ("--steps=2", "--grpo.num_iterations=2", f"--grpo.rollout.reward_file={reward_file}",
            "--grpo.rollout.rewards=('guarded_copy',)", "--checkpoint.every_steps=2")
    lines = _run("tiny_grpo.py", run_dir, *args)
    first, second = lines
    assert first["agreement/logp_gap_max"] < 1e-5               # step 1: π_old stored from the same weights
    assert second["agreement/logp_gap_mean"] == first["agreement/logp_gap_mean"]   # gap is π_old vs q: unchanged
    # The same rollout, advantages and masks: with π_old = sg(π_θ) the token-mean loss -Σ ρ A / N would repeat
    # step 1's value exactly (ρ = 1); the stored π_old, one update old, makes ρ != 1.
    assert second["loss"] != first["loss"]

    reward_file.with_suffix(".broken").write_text("")
    before = {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file() and "tensorboard" not in str(p)}
    with pytest.raises(ValueError, match=r"guarded_copy.*my_rewards\.py.*ZeroDivisionError"):
        _run("tiny_grpo.py", run_dir, *args[1:], "--steps=4", "--resume")
    after = {p: p.read_bytes() for p in before}
    # config.json records the resumed run's settings (steps=4 now); everything else is byte for byte as it was.
    config = run_dir / "config.json"
    assert json.loads(after.pop(config))["steps"] == 4 and json.loads(before.pop(config))["steps"] == 2
    assert after == before and any("checkpoints" in str(p) for p in after)


def test_bad_rl_inputs_fail_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"grpo\.rollout\.n=1.*at least 2"):
        _run("tiny_grpo.py", tmp_path / "a", "--grpo.rollout.n=1")
    with pytest.raises(ValueError, match=r"64 of 64 prompts are longer than grpo\.rollout\.max_prompt_length=4 "
                                         r"tokens .* the longest 'copy_\d+' with (\d+)\. "
                                         r"Set grpo\.rollout\.max_prompt"):
        _run("tiny_grpo.py", tmp_path / "b", "--grpo.rollout.max_prompt_length=4")
    with pytest.raises(ValueError, match=r"steps=3 is not a multiple of the 2 optimizer steps .*num_iterations x "
                                         r"grpo\.mini_batches.* use steps=2 or 4"):
        _run("tiny_grpo.py", tmp_path / "c", "--steps=3", "--grpo.mini_batches=2")
    with pytest.raises(ValueError, match=r"unknown reward 'copyy'; did you mean 'copy'"):
        _run("tiny_grpo.py", tmp_path / "d", "--grpo.rollout.rewards=copyy")
    # All checked before the model is built: nothing was written.
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_parquet_row_without_an_answer_is_named(tmp_path, caugym_dir):
    """Rows of CauGym's own RL parquet, the second one stripped of its ground truth."""
    import pandas as pd

    rows = pd.read_parquet(caugym_dir / "train" / "online_rl.parquet").head(3)
    rows.at[1, "reward_model"] = {k: v for k, v in rows.at[1, "reward_model"].items() if k != "ground_truth"}
    path = tmp_path / "rl.parquet"
    rows.to_parquet(path)
    with pytest.raises(RowError, match=r"rl\.parquet: row 1: .*ground_truth"):
        _run("tiny_grpo.py", tmp_path / "run", f"--data.source={path}")
    assert not (tmp_path / "run").exists()


# --- a killed GRPO run resumes with the same rollouts ---------------------------------------------------------------
def _cmd(run_dir, *extra):
    return [sys.executable, "-m", "caujax.train", "--config", "configs/tiny_grpo.py", f"--run_dir={run_dir}",
            "--steps=6", "--checkpoint.every_steps=2", "--checkpoint.keep=10", "--export=false", *extra]


def test_grpo_killed_by_sigkill_resumes_with_the_same_rollouts(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    run = lambda *a: subprocess.run(_cmd(*a), cwd=REPO, env=env, capture_output=True, text=True)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run(straight)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(_cmd(killed), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not (killed / "checkpoints" / "2").is_dir():
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    again = run(killed, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    read = lambda d, f: [json.loads(l) for l in (d / f).read_text().splitlines()]
    timeless = lambda ls: [{k: v for k, v in l.items() if k not in TIMING} for l in ls]
    assert [l["step"] for l in read(killed, "metrics.jsonl")] == list(range(1, 7))
    assert timeless(read(killed, "metrics.jsonl")) == timeless(read(straight, "metrics.jsonl"))   # bitwise
    assert read(killed, "rollouts.jsonl") == read(straight, "rollouts.jsonl")        # the same completions


def test_dynamic_sampling_truncation_masking_and_a_stuck_run(tmp_path):
    """The strict causal reward is 0 for every completion of a random model: every group has zero spread, dynamic
    sampling draws max_resample_rounds more rounds, keeps nothing and trains on a logged batch of filler rows with
    no loss; at the second such rollout (stuck_rollouts=2) the run stops with a message naming the cause and the
    setting, and the step-1 checkpoint stays. With the copy reward (continuous, spread in every group) nothing is
    dropped, and mask_truncated_completions leaves exactly the completions that ended (EOS) in the loss."""
    from caujax.rl.rollout import RolloutStuck

    flat_dir = tmp_path / "flat"
    with pytest.warns(UserWarning, match=r"only 0 of 4 groups had any reward spread after 2 extra rounds"), \
            pytest.raises(RolloutStuck, match=r"rollout 2 \(1-based\): 100% of groups .* same reward .*"
                                             r"stuck_rollouts=2"):
        _run("tiny_grpo.py", flat_dir, "--steps=4", "--grpo.dynamic_sampling=true", "--grpo.max_resample_rounds=2",
             "--grpo.rollout.rewards=causal", "--grpo.rollout.stuck_rollouts=2")
    lines = [json.loads(l) for l in (flat_dir / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1] and (flat_dir / "checkpoints" / "1").is_dir()
    flat = lines[0]
    assert flat["zero_spread_fraction"] == 1.0 and flat["resample_rounds"] == 2 and flat["filler_rows"] == 16
    assert flat["count"] == 1.0 and flat["loss"] == 0.0          # no completion token in the loss (count floor 1)
    # What was sampled is still reported (3 rounds of 16), and written to the rollout table.
    assert flat["kept_fraction"] == 0.0 and flat["reward_mean"] == 0.0 and flat["accuracy"] == 0.0
    assert len((flat_dir / "rollouts.jsonl").read_text().splitlines()) == 48

    run_dir = tmp_path / "masked"
    line = _run("tiny_grpo.py", run_dir, "--steps=1", "--grpo.dynamic_sampling=true",
                "--grpo.rollout.mask_truncated_completions=true")[0]
    rows = [json.loads(l) for l in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert line["resample_rounds"] == 0 and line["filler_rows"] == 0 and len(rows) == 16
    ended = [r["tokens"] for r in rows if not r["truncated"]]
    assert 0 < len(ended) < 16 and line["count"] == sum(ended)
