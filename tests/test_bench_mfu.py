"""bench/mfu.py's peak table: a device's kind picks its datasheet figures; an unknown accelerator is refused."""
import types

import pytest

from bench.mfu import peaks


def _device(kind, platform="gpu"):
    return types.SimpleNamespace(device_kind=kind, platform=platform)


@pytest.mark.parametrize("kind, expected", [
    ("NVIDIA H100 80GB HBM3", (989.0, 3350.0)), ("NVIDIA H100 PCIe", (756.0, 2000.0)),
    ("NVIDIA H200", (989.0, 4800.0)), ("TPU v5 lite", (197.0, 819.0)),
    ("TPU v4", (275.0, 1228.0)), ("TPU v5", (459.0, 2765.0)), ("NVIDIA A100-SXM4-80GB", (312.0, 2039.0))])
def test_device_kind_picks_its_datasheet_peaks(kind, expected):
    assert peaks(_device(kind), None, None, "bfloat16")[:2] == expected


def test_given_peaks_win_and_an_unknown_accelerator_is_refused():
    assert peaks(_device("Mystery X1"), 100.0, 900.0, "bfloat16")[:2] == (100.0, 900.0)
    with pytest.raises(SystemExit, match="--peak-tflops"):
        peaks(_device("Mystery X1"), None, None, "bfloat16")
