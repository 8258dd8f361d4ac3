"""What machine a benchmark ran on, and how close each side came to what that machine can do.

Call `describe()` inside the benchmark's own process (thread pools, flags and libraries are those the benchmark
sees): CPU model and the instruction-set flags that decide matmul speed, core count, library versions and thread
counts, and the MEASURED ceilings:

  matmul GFLOP/s   a square matmul, best of a few runs after warm-up, in XLA float32, XLA bfloat16 inputs with
                   float32 accumulation (`preferred_element_type=jnp.float32`, what caujax's bf16 compute does),
                   torch float32 and bfloat16 as nn.Linear runs them (F.linear; oneDNN for bf16, under autocast
                   too), and torch bfloat16 through torch.matmul (on CPUs without avx512_bf16 / AMX a path tens to
                   hundreds of times slower). The size doubles from 256 while the next size's run should take at
                   most TARGET_RUN_S, up to 2048, so a slow path is measured on a small matrix and the whole
                   measurement takes a few seconds; GFLOP/s is a rate, so a smaller matrix's rate stands in (it is,
                   if anything, low). A side's ceiling is its library's fastest path at its precision.
  memory GB/s      a large array copy (numpy, one thread) and a jitted XLA elementwise pass (all threads): bytes read
                   + bytes written per second, best of a few; the larger is the bandwidth.

Then `achieved(flops, seconds, ceiling)` gives a side's GFLOP/s and its share of the ceiling for its precision,
`train_flops` / `forward_flops` the model FLOPs of a step, and `decode_bytes_bound` the memory-bandwidth bound of a
decode step. `python -m bench.machine` prints the description alone.
"""
from __future__ import annotations

import os
import platform
import resource
import sys
import time

import numpy as np

# /proc/cpuinfo flags that decide how fast a CPU multiplies matrices (float32 and bfloat16).
MATMUL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
                "asimd", "asimddp", "sve", "sve2", "bf16", "i8mm", "sme")            # the last line: ARM
TARGET_RUN_S = 0.3        # the ceiling's matmul size doubles while the next size's run should take at most this
GB = 1e9


# --- the machine ---------------------------------------------------------------------------------------------------
def cpu_info() -> dict:
    """{"model", "flags" (those of MATMUL_FLAGS present), "logical_cpus", "usable_cpus", "arch"}; on a machine
    without /proc/cpuinfo (macOS, Windows) the model is platform.processor() and flags are None (unknown)."""
    model, flags = None, None
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():                    # the first CPU's entries
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "cpu model") and model is None:
                model = value.strip()
            elif key in ("flags", "Features") and flags is None:
                present = set(value.split())
                flags = [f for f in MATMUL_FLAGS if f in present]
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "flags": flags, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "arch": platform.machine()}


def software() -> dict:
    """Versions and thread counts of python, numpy, jax (backend, devices) and torch (intra-/inter-op threads),
    and the environment variables that change either."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import jax
        import jaxlib
        out |= {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "jax_backend": jax.default_backend(),
                "jax_devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"}
    except ImportError:
        pass
    try:
        import torch
        out |= {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                "torch_interop_threads": torch.get_num_interop_threads(),
                "torch_mkldnn": bool(torch.backends.mkldnn.is_available())}
    except ImportError:
        pass
    out["env"] = {k: os.environ[k] for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                             "JAX_PLATFORMS", "TF_CPP_MIN_LOG_LEVEL") if k in os.environ}
    out["env"] |= malloc_env()
    return out


def malloc_env() -> dict:
    """The glibc allocator variables this process started with (read once, at start-up; README.md: the
    non-returning setting for small, fast steps)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES"}


def other_load(seconds: float = 1.0) -> float | None:
    """CPU cores kept busy by other processes over `seconds` (/proc/stat minus this process's own time), or None
    where /proc is missing. Anything above ~0.25 distorts the ratios (torch's thread pool more than XLA's)."""
    def sample():
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
        return sum(cpu) - cpu[3] - cpu[4], int(own[11]) + int(own[12])    # busy jiffies (all), own utime + stime
    try:
        busy0, own0 = sample()
        time.sleep(seconds)
        busy1, own1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, (busy1 - busy0 - (own1 - own0)) / os.sysconf("SC_CLK_TCK") / seconds)


def peak_rss_gb() -> float:
    """This process's peak resident set size in GB (ru_maxrss: KiB on Linux, bytes on macOS), since the start or
    the last successful `reset_peak_rss()`."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / GB if sys.platform == "darwin" else rss * 1024 / GB


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0: `5` into /proc/self/clear_refs, which ru_maxrss
    follows), so that memory a measurement freed does not count as the benchmark's. False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- measured ceilings -------------------------------------------------------------------------------------------
def _grow(run, max_size: int, repeats: int) -> tuple[float, int]:
    """(best GFLOP/s, size) of `run(n) -> seconds of one n x n x n matmul`: from n = 256, doubling while the next
    size should take at most TARGET_RUN_S (8x the best of two runs at this one) and stays <= max_size; each size is
    warmed up first; best of `repeats` at the last."""
    n = 256
    while True:
        run(n)                                            # warm-up: compile / allocate / first-touch
        seconds = min(run(n), run(n))
        if n * 2 > max_size or seconds * 8 > TARGET_RUN_S:
            break
        n *= 2
    best = min([seconds] + [run(n) for _ in range(max(repeats - 2, 0))])
    return 2 * n ** 3 / best / GB, n


def xla_matmul_gflops(dtype: str = "float32", max_size: int = 2048, repeats: int = 3) -> tuple[float, int]:
    """(GFLOP/s, size) of a jitted XLA square matmul; dtype "bfloat16" = bf16 inputs, float32 accumulation."""
    import jax
    import jax.numpy as jnp

    dt = jnp.dtype(dtype)
    mm = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))

    held = {}

    def run(n):
        if n not in held:
            held.clear()
            rng = np.random.default_rng(0)
            held[n] = tuple(jnp.asarray(rng.standard_normal((n, n), np.float32), dt) for _ in range(2))
        a, b = held[n]
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        return time.perf_counter() - t0

    return _grow(run, max_size, repeats)


def torch_matmul_gflops(dtype: str = "float32", max_size: int = 2048, repeats: int = 3,
                        op: str = "linear") -> tuple[float, int]:
    """(GFLOP/s, size) of a torch CPU matmul on tensors of `dtype`. op "linear": F.linear(a, b) = a @ b.T, what an
    nn.Linear forward runs (under autocast too), oneDNN's path for bfloat16; op "matmul": torch.matmul(a, b), which
    for bfloat16 on CPUs without avx512_bf16 / AMX takes a far slower path (tens of times here)."""
    import torch

    dt = getattr(torch, dtype)
    fn = torch.nn.functional.linear if op == "linear" else torch.matmul
    held = {}

    def run(n):
        if n not in held:
            held.clear()
            gen = torch.Generator().manual_seed(0)
            held[n] = tuple(torch.randn(n, n, generator=gen).to(dt) for _ in range(2))
        a, b = held[n]
        with torch.no_grad():
            t0 = time.perf_counter()
            fn(a, b)
            return time.perf_counter() - t0

    return _grow(run, max_size, repeats)


def memory_bandwidth_gbs(mbytes: int = 256, repeats: int = 3) -> dict:
    """Bytes read + written per second (GB/s) by a pass over a `mbytes` float32 array (far beyond the caches):
    numpy (np.copyto into a second array, one thread) and XLA (a jitted x * 1.0001 with x donated, so the output
    reuses the input's pages: all threads, no page faults); "best" is the larger. Both arrays are freed after."""
    n = mbytes * 2 ** 20 // 4
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    np.copyto(dst, src)
    nbytes = 2 * src.nbytes
    out = {"numpy_copy": nbytes / min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeats)) / GB}
    del src, dst
    try:
        import jax
        import jax.numpy as jnp

        scale = jax.jit(lambda v: v * jnp.float32(1.0001), donate_argnums=0)
        x = [scale(jnp.ones(n, jnp.float32)).block_until_ready()]

        def step():
            x[0] = scale(x[0]).block_until_ready()

        out["xla_copy"] = nbytes / min(_timed(step) for _ in range(repeats)) / GB
        del x
    except ImportError:
        pass
    out["best"] = max(out.values())
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


_MEASURED: dict | None = None


def ceilings(max_size: int = 2048) -> dict:
    """The measured ceilings of this process, measured on the first call only: {"matmul": {name: GFLOP/s},
    "matmul_size": {name: n}, "bandwidth": {...GB/s}, "seconds": time the measurement took}. Names: xla_float32,
    xla_bfloat16 (bf16 inputs, f32 accumulation), torch_float32 and torch_bfloat16 (F.linear, nn.Linear's path),
    torch_bfloat16_matmul (torch.matmul; a library that is not installed is left out)."""
    global _MEASURED
    if _MEASURED is None:
        t0 = time.perf_counter()
        matmul, size = {}, {}
        runs = [("xla_float32", xla_matmul_gflops, {"dtype": "float32"}),
                ("xla_bfloat16", xla_matmul_gflops, {"dtype": "bfloat16"}),
                ("torch_float32", torch_matmul_gflops, {"dtype": "float32"}),
                ("torch_bfloat16", torch_matmul_gflops, {"dtype": "bfloat16"}),
                ("torch_bfloat16_matmul", torch_matmul_gflops, {"dtype": "bfloat16", "op": "matmul"})]
        for name, fn, kwargs in runs:
            try:
                matmul[name], size[name] = fn(max_size=max_size, **kwargs)
            except ImportError:                   # no torch here: its entries are left out
                pass
        _MEASURED = {"matmul": matmul, "matmul_size": size, "bandwidth": memory_bandwidth_gbs(),
                     "seconds": time.perf_counter() - t0}
    return _MEASURED


def ceiling(lib: str, precision: str) -> float:
    """The measured matmul GFLOP/s of `lib` ("xla" or "torch") at `precision` ("float32", "bf16"/"bfloat16"): the
    fastest path measured (for torch bf16, F.linear's)."""
    dtype = "bfloat16" if precision in ("bf16", "bfloat16") else "float32"
    m = ceilings()["matmul"]
    return max(v for k, v in m.items() if k == f"{lib}_{dtype}" or k.startswith(f"{lib}_{dtype}_"))


def describe(print_: bool = True, measure: bool = True) -> dict:
    """{"cpu", "software", "ceilings", "rss_reset"} of this process (ceilings measured once, a few seconds), printed
    as a short block when `print_`. After measuring, the peak RSS is reset (`reset_peak_rss`; "rss_reset" says
    whether that worked), so a later `peak_rss_gb()` is the benchmark's own, not the measurement's arrays'."""
    out = {"cpu": cpu_info(), "software": software(), "other_load": other_load()}
    if measure:
        out["ceilings"] = ceilings()
        out["rss_reset"] = reset_peak_rss()
    if print_:
        print(format_description(out), flush=True)
    return out


def format_description(d: dict) -> str:
    cpu, sw = d["cpu"], d["software"]
    flags = "unknown (no /proc/cpuinfo)" if cpu["flags"] is None else " ".join(cpu["flags"]) or "none"
    lines = [f"machine: {cpu['model']} ({cpu['arch']}), {cpu['usable_cpus']} usable of {cpu['logical_cpus']} "
             f"logical CPUs; matmul flags: {flags}",
             f"software: python {sw['python']}, numpy {sw['numpy']}"
             + (f", jax {sw['jax']} ({sw['jax_backend']}, {sw['jax_devices']})" if "jax" in sw else "")
             + (f", torch {sw['torch']} ({sw['torch_threads']} intra-op / {sw['torch_interop_threads']} inter-op "
                f"threads)" if "torch" in sw else "")
             + (f"; env {sw['env']}" if sw["env"] else "")]
    load = d.get("other_load")
    if load is not None:
        lines.append(f"other processes: {load:.2f} CPU cores busy"
                     + (" -- WARNING: the machine is not quiet; ratios measured now are distorted (bench/README.md)"
                        if load > 0.25 else " (quiet)"))
    if "ceilings" in d:
        c = d["ceilings"]
        mm = ", ".join(f"{k} {v:.1f} (n={c['matmul_size'][k]})" for k, v in c["matmul"].items())
        bw = ", ".join(f"{k} {v:.1f}" for k, v in c["bandwidth"].items() if k != "best")
        lines += [f"matmul ceiling GFLOP/s: {mm}",
                  f"memory bandwidth GB/s (read+write): {bw} -> {c['bandwidth']['best']:.1f} "
                  f"(measured in {c['seconds']:.1f} s)"
                  + ("" if d.get("rss_reset", True) else "; peak RSS not reset: it includes the measurement")]
    return "\n".join(lines)


# --- model FLOPs and bytes -----------------------------------------------------------------------------------------
def matmul_params(cfg) -> int:
    """Parameters that take part in a matmul for every token: the non-embedding weights of the blocks (q, k, v, o
    projections and the gated MLP's gate, up, down) plus the unembedding V x D (the same matrix as the embedding
    when tied: the lookup itself costs no FLOPs, the unembedding matmul does). Norms and biases are left out
    (< 0.1% of the FLOPs)."""
    D, N, K, H, F = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
    per_layer = D * N * H + 2 * D * K * H + N * H * D + 3 * D * F
    return cfg.num_layers * per_layer + cfg.vocab_size * D


def _attention_context(cfg, seq_len: float) -> float:
    """Sum over layers of the keys a query sees on average (causal: seq_len / 2; a sliding-window layer sees at
    most the window)."""
    total = 0.0
    for i in range(cfg.num_layers):
        window = cfg.sliding_window if cfg.layer_type(i) == "local" else None
        total += min(seq_len / 2, window) if window else seq_len / 2
    return total


def forward_flops(cfg, tokens: float, seq_len: float) -> float:
    """Model FLOPs of a forward pass over `tokens` tokens in causal rows of length `seq_len`:
    2 x matmul_params x tokens + 4 x N x H x (mean keys per query, summed over layers) x tokens,
    the attention term being Q K^T and A V (2 FLOPs per multiply-add each). For rows of differing lengths T_i, pass
    seq_len = sum T_i^2 / sum T_i (`effective_seq_len`): that makes the attention term exact."""
    attention = 4 * cfg.num_heads * cfg.head_dim * _attention_context(cfg, seq_len)
    return (2 * matmul_params(cfg) + attention) * tokens


def train_flops(cfg, real_tokens: float, seq_len: float) -> float:
    """Model FLOPs of a forward + backward pass (backward = 2 x forward) over `real_tokens`:

        6 x (non-embedding params + unembedding) x tokens  +  12 x L x N x H x seq_len x tokens / 2 (causal)

    the estimate of PaLM (Chowdhery et al. 2022, appendix B: 6N + 12 L H Q T per token) and of Chinchilla
    (Hoffmann et al. 2022, appendix F), with the attention term halved for causal masking (only the keys at or
    before a query are needed) and capped at the window on sliding-window layers. These are model FLOPs (MFU):
    recomputation, padding, softmax, norms and the optimizer are not counted."""
    return 3 * forward_flops(cfg, real_tokens, seq_len)


def effective_seq_len(mask_BT) -> float:
    """sum T_i^2 / sum T_i over the documents of a mask [B, T] (0 padding; 1, or a packed row's segment ids
    1, 2, ...): the seq_len for which the attention term of forward_flops / train_flops is exact for documents of
    differing lengths (a packed document attends only inside itself)."""
    mask = np.asarray(mask_BT)
    lengths = np.array([(mask == s).sum(axis=-1) for s in range(1, int(mask.max(initial=0)) + 1)],
                       np.float64).ravel()
    return float((lengths ** 2).sum() / max(lengths.sum(), 1.0))


def decode_step_bytes(cfg, batch: int, context: float, param_bytes: int = 4, cache_bytes: int | None = None) -> float:
    """Bytes one decode step must read at least: every matmul weight once (matmul_params x param_bytes, the
    unembedding included, shared by the whole batch) plus each row's K and V cache up to `context` positions
    (2 x L x K x H x context x batch x cache_bytes; a sliding-window layer at most its window). Norms, biases, the
    B embedding rows looked up and everything written are left out: this is a lower bound."""
    cache_bytes = param_bytes if cache_bytes is None else cache_bytes
    kv_positions = sum(min(context, cfg.sliding_window) if cfg.layer_type(i) == "local" and cfg.sliding_window
                       else context for i in range(cfg.num_layers))
    return matmul_params(cfg) * param_bytes + 2 * cfg.num_kv_heads * cfg.head_dim * kv_positions * batch * cache_bytes


def decode_bytes_bound(cfg, batch: int, context: float, bandwidth_gbs: float | None = None, param_bytes: int = 4,
                       cache_bytes: int | None = None) -> dict:
    """The memory-bandwidth bound of a decode step: {"bytes": decode_step_bytes, "seconds": bytes / bandwidth,
    "tokens_per_s": batch / seconds}; bandwidth defaults to the measured one (ceilings()["bandwidth"]["best"])."""
    bandwidth_gbs = bandwidth_gbs or ceilings()["bandwidth"]["best"]
    nbytes = decode_step_bytes(cfg, batch, context, param_bytes, cache_bytes)
    seconds = nbytes / (bandwidth_gbs * GB)
    return {"bytes": nbytes, "seconds": seconds, "tokens_per_s": batch / seconds}


def achieved(flops: float, seconds: float, ceiling_gflops: float) -> tuple[float, float]:
    """(achieved GFLOP/s, % of the ceiling) of `flops` done in `seconds`."""
    gflops = flops / seconds / GB
    return gflops, 100.0 * gflops / ceiling_gflops


if __name__ == "__main__":
    describe()
    print(f"peak RSS {peak_rss_gb():.2f} GB")
