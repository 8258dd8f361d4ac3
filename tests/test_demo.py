"""The demo pipeline end to end at test size (configs/demo_tiny.py): killed during its SFT stage, run again, it
continues from the stage and checkpoint it was in and ends with every file the report promises."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from caujax.demo.__main__ import main
from caujax.demo.report import paired_difference

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_demo_killed_in_sft_resumes_and_completes_every_stage(tmp_path, capsys):
    run_dir = tmp_path / "demo"
    cmd = [sys.executable, "-m", "caujax.demo", "--config", "configs/demo_tiny.py", f"--run_dir={run_dir}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while not (run_dir / "sft" / "checkpoints" / "2").is_dir():
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    stages = run_dir / "stages"
    assert {p.stem for p in stages.glob("*.json")} == {"data", "base", "eval_base"}
    before = (run_dir / "data" / "train.json").read_text()

    records = main(["--config", str(REPO / "configs" / "demo_tiny.py"), f"--run_dir={run_dir}"])
    assert list(records) == ["data", "base", "eval_base", "sft", "eval_sft", "grpo", "eval_grpo", "report"]
    assert (run_dir / "data" / "train.json").read_text() == before        # finished stages are not redone
    assert f"continuing {run_dir / 'sft'} from its last checkpoint" in capsys.readouterr().out
    sft = [json.loads(l) for l in (run_dir / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in sft] == [1, 2, 3, 4]                         # each step once, across the kill
    train = {r["problem"] for r in json.loads(before)}
    heldout = json.loads((run_dir / "data" / "heldout.json").read_text())
    assert len(heldout) == 8 and not train & {r["problem"] for r in heldout}
    for name in ("accuracy.png", "curves.png", "sft/loss.png", "grpo/loss.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    report = (run_dir / "report.md").read_text()
    assert "| after GRPO |" in report and "95% interval" in report and "Rollout samples" in report
    assert (run_dir / "grpo" / "hf" / "model.safetensors").is_file() and (run_dir / "grpo" / "rollouts.jsonl").is_file()
    scores = records["eval_grpo"]["heldout"]
    assert scores["n"] == 8 and scores["strict"] <= scores["format_valid"]      # a strict hit is well formed
    assert sum(k["n"] for k in scores["by_kind"].values()) == 8 and "items (n=" in report

    # A stage record from before the by-kind table (a demo resumed across versions): "-" there, no KeyError.
    from caujax.demo.__main__ import load
    from caujax.demo.report import write_report
    old = {**records, "eval_base": {**records["eval_base"], "heldout": {
        k: v for k, v in records["eval_base"]["heldout"].items() if k != "by_kind"}}}
    write_report(run_dir, load(str(REPO / "configs" / "demo_tiny.py"), {"run_dir": str(run_dir)}),
                 {s: old[s] for s in list(old)[:-1]})
    assert "| before training | - |" in (run_dir / "report.md").read_text()

    again = main(["--config", str(REPO / "configs" / "demo_tiny.py"), f"--run_dir={run_dir}"])   # all done: no work
    assert all(again[s]["seconds"] == records[s]["seconds"] for s in again)
    with pytest.raises(ValueError, match="heldout_items differ"):        # another demo into the same run_dir
        main(["--config", str(REPO / "configs" / "demo_tiny.py"), f"--run_dir={run_dir}", "--heldout_items=9"])


def test_item_kind_tells_graph_only_items_from_computed_ones():
    from caujax.causal.generate import generate
    from caujax.data.caugym import load_file
    from caujax.demo.report import item_kind

    rows = generate(60, 4, tasks=("ATE", "NIE", "CDE"), nodes=(3, 4))
    path = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"kinds-{os.getpid()}.json"
    path.write_text(json.dumps(rows))
    items = load_file(path, set_name="heldout")
    path.unlink()
    kinds = [item_kind(it) for it in items]
    assert set(kinds) == {"cause", "non-cause"}
    for it, kind in zip(items, kinds):
        computed = len(it.reason) > 1
        assert (kind == "cause") == computed, (it.reason, kind)


def test_paired_difference_interval():
    # 10 items: 6 right after, 2 before, the 2 right before also right after: d = 4 ones, 6 zeros.
    after = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    before = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    mean, low, high = paired_difference(after, before)
    sd = (sum((d - 0.4) ** 2 for d in [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]) / 9) ** 0.5
    assert mean == pytest.approx(0.4) and high - mean == pytest.approx(1.96 * sd / 10 ** 0.5)
    assert paired_difference([1, 0], [1, 0]) == (0.0, 0.0, 0.0)


def test_a_bad_grpo_setting_fails_before_sft(tmp_path):
    """Prompts longer than the GRPO rollout's cache are refused once the base tokenizer exists, not after SFT."""
    run_dir = tmp_path / "demo"
    with pytest.raises(ValueError, match=r"longer than grpo.rollout.max_prompt_length=8"):
        main(["--config", str(REPO / "configs" / "demo_tiny.py"), f"--run_dir={run_dir}",
              "--grpo.grpo.rollout.max_prompt_length=8"])
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"data", "base"}
