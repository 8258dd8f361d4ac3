"""Several processes, one mesh: `jax.distributed.initialize` from the launch environment.

Every process runs the same command; JAX then sees every process's devices in `jax.devices()` and the mesh spans
them all. Two ways to say it, read before any other JAX call:

    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i   any machines (GPU nodes, tests)
    CAUJAX_DISTRIBUTED=auto                                                    TPU pod slices, SLURM, Open MPI,
                                                                               Kubernetes: JAX finds the cluster
Without either, the run is one process (nothing to initialise).
"""
from __future__ import annotations

import os

_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_from_env(environ=None) -> bool:
    """Call `jax.distributed.initialize` when the environment asks for several processes; True when it did.

    Raises ValueError naming the variable when the three JAX_* variables are only partly set or not integers, or
    when CAUJAX_DISTRIBUTED is set to something other than "auto" (a typo would otherwise train one process per
    host, each on its own copy of the data)."""
    env = os.environ if environ is None else environ
    import jax

    mode = env.get("CAUJAX_DISTRIBUTED", "").strip()
    if mode and mode != "auto":
        raise ValueError(f"CAUJAX_DISTRIBUTED={mode!r}: the only value is 'auto' (let JAX detect the cluster); "
                         f"unset it for one process, or set {', '.join(_VARS)}")
    given = [v for v in _VARS if env.get(v)]
    if not given and not mode:
        return False
    if mode == "auto" and not given:
        try:
            jax.distributed.initialize()
        except (ValueError, RuntimeError) as e:      # JAX's own words name its arguments, not the environment
            raise ValueError(f"CAUJAX_DISTRIBUTED=auto found no cluster to join ({e}): JAX detects TPU pod workers, "
                             f"SLURM and Open MPI jobs; elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and "
                             f"JAX_PROCESS_ID, or run python -m caujax.train directly on one machine") from None
        return True
    missing = [v for v in _VARS if v not in given]
    if missing:
        raise ValueError(f"{', '.join(given)} set but {', '.join(missing)} not: a multi-process launch needs all "
                         f"of {', '.join(_VARS)}")
    numbers = {}
    for v in _VARS[1:]:
        try:
            numbers[v] = int(env[v])
        except ValueError:
            raise ValueError(f"{v}={env[v]!r} is not an integer") from None
    n, i = numbers["JAX_NUM_PROCESSES"], numbers["JAX_PROCESS_ID"]
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"JAX_PROCESS_ID={i} with JAX_NUM_PROCESSES={n}: the id must be in [0, {n})")
    jax.distributed.initialize(coordinator_address=env["JAX_COORDINATOR_ADDRESS"], num_processes=n, process_id=i)
    return True
