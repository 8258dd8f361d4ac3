"""Run every benchmark in bench/ with the settings bench/README.md reports, one after the other, each in its own
subprocess (a fresh process: no compilation cache, thread pool or memory carried over), printing their output.

    python -m bench.run_all                      # all of them (about an hour on 2 cores; the eval one most)
    python -m bench.run_all --only sampler-tiny  # a subset, by name
    python -m bench.run_all --list               # names and commands, nothing run

Benchmarks under contention lie (DESIGN.md "Known traps"): run this on a quiet machine. The exit status is 1 when
any benchmark failed; the others still run.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent

# (name, module, arguments): the commands of bench/README.md, in its order, then the precision / sampling / KTO
# variants (the paper's sampling, bfloat16 decoding and training).
BENCHMARKS = [
    ("sampler-tiny", "bench.sampler_vs_hf", ["--model", "tiny-qwen2", "--batch", "8", "--prompt-len", "64",
                                             "--new", "128", "--repeats", "3"]),
    ("sampler-gemma3", "bench.sampler_vs_hf", ["--model", "gemma3-270m", "--batch", "4", "--prompt-len", "64",
                                               "--new", "32", "--repeats", "2"]),
    ("step-sft", "bench.step_vs_trl", ["--method", "sft", "--batch", "8", "--seq-len", "512", "--repeats", "2",
                                       "--pad-multiple", "128"]),
    ("step-dpo", "bench.step_vs_trl", ["--method", "dpo", "--batch", "4", "--seq-len", "512", "--repeats", "2"]),
    ("eval-compilations", "bench.eval_compilations", ["--n", "1", "--max-new-tokens", "4", "--batch-size", "16"]),
    ("compile-depth", "bench.compile_depth", ["--layers", "4", "48", "--repeats", "2"]),
    ("attention-memory", "bench.attention_memory", ["--tokens", "4096"]),
    ("sft-memory-gemma3", "bench.sft_memory", ["--batch", "4", "--seq-len", "512", "--steps", "2"]),
    ("grpo-iteration", "bench.grpo_vs_trl", ["--prompts", "4", "--group", "8", "--completion-len", "64",
                                             "--iterations", "4", "--repeats", "2"]),
    ("step-kto", "bench.step_vs_trl", ["--method", "kto", "--batch", "8", "--seq-len", "512", "--repeats", "2"]),
    ("step-sft-bf16", "bench.step_vs_trl", ["--method", "sft", "--precision", "bf16", "--batch", "8",
                                            "--seq-len", "512", "--repeats", "2"]),
    ("sampler-tiny-sampled", "bench.sampler_vs_hf", ["--model", "tiny-qwen2", "--batch", "8", "--prompt-len", "64",
                                                     "--new", "128", "--repeats", "3", "--temperature", "0.6",
                                                     "--top-p", "0.95"]),
    ("sampler-tiny-bf16", "bench.sampler_vs_hf", ["--model", "tiny-qwen2", "--batch", "8", "--prompt-len", "64",
                                                  "--new", "128", "--repeats", "3", "--dtype", "bfloat16"]),
    ("sampler-gemma3-bf16-sampled", "bench.sampler_vs_hf", ["--model", "gemma3-270m", "--batch", "4",
                                                            "--prompt-len", "64", "--new", "32", "--repeats", "2",
                                                            "--dtype", "bfloat16", "--temperature", "0.6",
                                                            "--top-p", "0.95"]),
    # On a GPU/TPU: --shape Qwen2.5-1.5B-Instruct --batch 8 --seq-len 2048 --decode-rows 64 (bench/README.md).
    ("mfu-smoke", "bench.mfu", ["--dtype", "float32", "--layers", "4", "--dim", "512", "--batch", "4",
                                "--seq-len", "256", "--decode-rows", "16", "--new-tokens", "64"]),
]


def _caugym_dir() -> str:
    """CAUGYM_DIR, else the shared/ checkout beside the repository (as tests/conftest.py finds it)."""
    return os.environ.get("CAUGYM_DIR") or str(REPO.parent / "shared" / "caugym")


def command(module: str, args: list[str]) -> list[str]:
    if module == "bench.eval_compilations":
        args = [*args, "--data-dir", _caugym_dir()]
    return [sys.executable, "-m", module, *args]


def main(argv=None) -> int:
    names = [name for name, _, _ in BENCHMARKS]
    ap = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=f"run only these: {', '.join(names)}")
    ap.add_argument("--skip", nargs="+", choices=names, metavar="NAME", default=[], help="run all but these")
    ap.add_argument("--list", action="store_true", help="print the benchmarks and their commands, run nothing")
    args = ap.parse_args(argv)

    chosen = [b for b in BENCHMARKS if (not args.only or b[0] in args.only) and b[0] not in args.skip]
    if args.list:
        for name, module, bench_args in chosen:
            print(f"{name}: {' '.join(command(module, bench_args)[1:])}")
        return 0
    results = []
    for name, module, bench_args in chosen:
        cmd = command(module, bench_args)
        print(f"\n=== {name}: python {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=REPO).returncode      # output streams straight through
        results.append((name, rc, time.perf_counter() - t0))
    print("\n=== summary")
    for name, rc, seconds in results:
        print(f"{name:28s} {'ok' if rc == 0 else f'FAILED (exit {rc})':16s} {seconds:7.0f} s")
    return int(any(rc for _, rc, _ in results))


if __name__ == "__main__":
    sys.exit(main())
