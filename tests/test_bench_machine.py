"""bench/machine.py's quiet-machine check: a busy neighbour process is counted and flagged; this process's own
work is not."""
import subprocess
import sys

from bench import machine


def test_a_busy_neighbour_is_counted_and_flagged_and_own_work_is_not():
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = machine.other_load(1.0)
    finally:
        spin.kill()
        spin.wait()
    assert busy is not None and busy > 0.5           # one spinning core, whatever else CI runs
    text = machine.format_description({"cpu": machine.cpu_info(), "software": {"python": "3", "numpy": "2",
                                                                                "env": {}}, "other_load": busy})
    assert "WARNING: the machine is not quiet" in text
    # Our own threads spinning do not count as other processes' load.
    import threading
    import time
    stop = time.perf_counter() + 1.5
    spinner = threading.Thread(target=lambda: [None for _ in iter(lambda: time.perf_counter() < stop, False)])
    spinner.start()
    own = machine.other_load(1.0)
    spinner.join()
    assert own is not None and own < busy
