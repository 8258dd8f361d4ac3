"""Several processes, one mesh (issue 12): two `python -m caujax.train` processes on localhost, one CPU device each,
joined by jax.distributed (caujax/distributed.py), against one process driving two CPU devices. Same mesh
(data=2), same batches, same losses; one set of run files and one checkpoint, which one process resumes."""
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO

TIMEOUT = 240          # seconds per launch; a process whose peer died waits on JAX's barrier, so never unbounded


def _env(devices: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "CAUJAX_DISTRIBUTED"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _train(config: str, run_dir, *args, processes: int = 1):
    """Run caujax.train as `processes` processes (one device each) or as one process with two devices; returns
    each process's output (stdout, then stderr). Fails the test with every process's output when one fails."""
    cmd = [sys.executable, "-m", "caujax.train", "--config", config, f"--run_dir={run_dir}", "--mesh.data=2", *args]
    if processes == 1:
        envs = [_env(2)]
    else:
        port = _free_port()
        envs = [_env(1, JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES=str(processes),
                     JAX_PROCESS_ID=str(i)) for i in range(processes)]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for env in envs]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=TIMEOUT))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            outs.append(p.communicate())
    if any(p.returncode for p in procs):
        logs = "\n".join(f"--- process {i} (exit {p.returncode}):\n{o[0][-3000:]}\n{o[1][-3000:]}"
                         for i, (p, o) in enumerate(zip(procs, outs)))
        pytest.fail(f"caujax.train failed:\n{logs}")
    return [out + err for out, err in outs]


def _metrics(run_dir) -> list[tuple[int, float, float]]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(m["step"], m["loss"], m["grad_norm"]) for m in lines]


def _same(a, b):
    assert [s for s, *_ in a] == [s for s, *_ in b]
    for (_, loss_a, norm_a), (_, loss_b, norm_b) in zip(a, b):
        assert loss_a == pytest.approx(loss_b, rel=1e-6, abs=1e-7) and norm_a == pytest.approx(norm_b, rel=1e-6)


@pytest.mark.parametrize("config", ["configs/tiny.py", "configs/tiny_grpo.py"], ids=["sft", "grpo"])
def test_two_processes_train_as_one_and_resume_on_one(tmp_path, config):
    two, one = tmp_path / "two", tmp_path / "one"
    said = _train(config, two, "--steps=2", processes=2)
    _train(config, one, "--steps=3")
    _same(_metrics(two), _metrics(one)[:2])
    # Process 0 alone speaks and writes: one summary, one metrics line per step, one checkpoint per step.
    assert "done: steps 1..2 of 2" in said[0] and "done:" not in said[1] and "step/s" not in said[1]
    assert sorted(p.name for p in (two / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    # Per-host data: each SFT process builds its half of every batch; rollouts are drawn whole on each.
    part = (lambda i: f"process {i} of 2 builds part {i + 1} of 2 of each batch's rows") if "grpo" not in config \
        else (lambda i: f"process {i} of 2 builds every row of each batch")
    assert part(0) in said[0] and part(1) in said[1]
    assert (two / "hf" / "config.json").exists()
    # The two-process checkpoint resumes in one process and goes on as the uninterrupted run did.
    _train(config, two, "--steps=3", "--resume")
    _same(_metrics(two), _metrics(one))


@pytest.mark.parametrize("env, message", [
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}, "JAX_PROCESS_ID not"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "'two' is not an integer"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "must be in [0, 2)"),
    ({"CAUJAX_DISTRIBUTED": "yes"}, "the only value is 'auto'"),
])
def test_a_half_said_launch_is_refused_by_name(env, message):
    from caujax.distributed import initialize_from_env
    with pytest.raises(ValueError, match=re.escape(message)):
        initialize_from_env(env)


def test_no_launch_variables_means_one_process():
    from caujax.distributed import initialize_from_env
    assert initialize_from_env({"PATH": "/bin"}) is False


def test_two_processes_read_their_rows_of_a_cached_reference_table(tmp_path):
    """DPO with π_ref's log-probs computed once up front: the table holds every row; each process's step reads its
    own part of it, beside its own part of the batch (train.py)."""
    args = ("--method=dpo", "--reference.mode=cached", "--steps=2", "--export=false")
    said = _train("configs/tiny.py", tmp_path / "two", *args, processes=2)
    _train("configs/tiny.py", tmp_path / "one", *args)
    assert "builds part 2 of 2" in said[1]
    _same(_metrics(tmp_path / "two"), _metrics(tmp_path / "one"))


def test_a_mesh_that_leaves_a_process_out_is_refused_by_name():
    """Two processes of one device each and a one-device mesh: the second would crash on its first fetch and the
    first wait on JAX's shutdown barrier for minutes; make_mesh refuses first."""
    import types

    from caujax.sharding import make_mesh
    devices = [types.SimpleNamespace(id=i, process_index=i) for i in range(2)]
    with pytest.raises(ValueError, match=r"= 1 devices, but this 2-process run has 2: a multi-process mesh must "
                                         r"cover every process's devices \(set the sizes to multiply to 2"):
        make_mesh(1, 1, 1, devices=devices)


def test_auto_detection_without_a_cluster_says_so():
    from caujax.distributed import initialize_from_env
    with pytest.raises(ValueError, match="CAUJAX_DISTRIBUTED=auto found no cluster to join"):
        initialize_from_env({"CAUJAX_DISTRIBUTED": "auto"})
