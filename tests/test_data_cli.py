"""Issue 13, item 10 (data CLI): every `python -m caujax.data` subcommand ends a user error with one line
`... error: ...` and exit status 2, never a traceback; generate's --style / --layout / --tasks are refused by argparse
and their choices are in --help."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from caujax.data import items
from caujax.data.__main__ import main

REPO = pathlib.Path(__file__).resolve().parent.parent


def _refused(capsys, argv) -> str:
    """argparse's refusal: SystemExit(2), usage and the message on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _failed(capsys, argv) -> str:
    """A user error at run time: status 2, exactly one line on stderr (progress bars aside), `error:` in it."""
    assert main(argv) == 2
    lines = [l for l in capsys.readouterr().err.splitlines() if "error:" in l]
    assert len(lines) == 1 and lines[0].startswith(f"python -m caujax.data {argv[0]}: error: "), lines
    return lines[0]


@pytest.mark.parametrize("option, value, expected", [
    ("--style", "bogus", "invalid choice: 'bogus' (choose from 'real', 'letters', 'nonsense', 'mixed')"),
    ("--layout", "tabular", "invalid choice: 'tabular' (choose from 'inline', 'calm', 'mixed')"),
    ("--tasks", "XYZ", "'XYZ': expected a comma-separated subset of ATE,CDE,ETT,NDE,NIE,PN,PS (XYZ not among"),
    ("--tasks", "ATE,pn", "(pn not among them)"),
    ("--tasks", ",", "expected a comma-separated subset"),
    ("--n", "0", "expected a positive integer"),
])
def test_generate_refuses_bad_options_naming_the_choices(capsys, tmp_path, option, value, expected):
    out = tmp_path / "gen.json"
    argv = ["generate", "--n", "2", "--out", str(out)]
    err = _refused(capsys, [*argv[:2], value, *argv[3:]] if option == "--n" else [*argv, option, value])
    assert expected in err and f"argument {option}" in err
    assert not out.exists()


def test_generate_help_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "{real,letters,nonsense,mixed}" in out and "{inline,calm,mixed}" in out
    assert "ATE,CDE,ETT,NDE,NIE,PN,PS" in out


def test_generate_with_valid_choices_writes_the_problems(capsys, tmp_path):
    out = tmp_path / "gen.json"
    assert main(["generate", "--n", "3", "--tasks", "PN, PS", "--style", "letters", "--out", str(out)]) == 0
    assert [p["Type"] for p in json.loads(out.read_text())] == ["PN", "PS", "PN"]


def test_baselines_without_a_data_directory_says_where_it_looked(capsys, tmp_path, monkeypatch):
    """The issue's example: no CAUGYM_DIR and no data where the CLI looks (the real places hidden)."""
    monkeypatch.delenv("CAUGYM_DIR", raising=False)
    monkeypatch.setattr(items, "REPO", tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    line = _failed(capsys, ["baselines", "--sets", "base", "--no-solver"])
    assert "no CauGym directory found: CAUGYM_DIR is not set" in line
    assert str(tmp_path / "shared" / "caugym") in line


def test_bad_data_directory_file_and_row_are_one_line_errors(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    assert str(missing) in _failed(capsys, ["baselines", "--sets", "base", "--caugym-dir", str(missing)])
    assert "missing.json" in _failed(capsys, ["convert", "--set", str(tmp_path / "missing.json"), "--to", "sft",
                                              "--out", str(tmp_path / "o.jsonl")])
    assert "unknown CauGym set 'nope'" in _failed(capsys, ["convert", "--set", "nope", "--to", "rl",
                                                           "--out", str(tmp_path / "o.jsonl")])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"Problem": "P(Y=1)?", "Answer": '{"PROB": "x"}', "Type": "ATE"}]))
    line = _failed(capsys, ["convert", "--set", str(bad), "--to", "rl", "--out", str(tmp_path / "o.jsonl")])
    assert "bad.json: row 0" in line
    assert not (tmp_path / "o.jsonl").exists()


def test_the_command_line_exits_2_without_a_traceback(tmp_path):
    """As a user runs it: a separate process, its exit status and its stderr."""
    env = {k: v for k, v in os.environ.items() if k != "CAUGYM_DIR"}
    done = subprocess.run([sys.executable, "-m", "caujax.data", "baselines", "--sets", "base",
                           "--caugym-dir", str(tmp_path / "nowhere")], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("python -m caujax.data baselines: error: CauGym directory")


# --- item 11: the torch-free install prints no "PyTorch was not found" notice --------------------------------------
NOTICE = "PyTorch was not found"


def _without_torch(tmp_path, code: str) -> subprocess.CompletedProcess:
    """`python -c code` in an environment where torch does not import (as after `pip install -e .` without the test
    extra): a sitecustomize maps it to None, so `import torch` fails and importlib.util.find_spec (transformers'
    probe) finds nothing."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["torch"] = None\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)


def test_torch_free_import_prints_no_torch_notice_but_other_warnings(tmp_path):
    # The control: transformers alone prints the notice here, so the blocker works and the test can fail.
    assert NOTICE in _without_torch(tmp_path, "import transformers").stderr
    done = _without_torch(tmp_path, "\n".join([
        "import caujax.data.batches as b",            # what a tiny run does first: train its tokenizer (transformers)
        "tok = b.train_tokenizer(['P(Y=1 | do(X=0)) = 0.25, so the effect is ' + str(i) for i in range(60)], 40)",
        "assert tok.eos_token_id == 3",
        "from transformers.utils import logging",
        "logging.get_logger('transformers').warning('a warning that stays')",
        "logging.get_logger('transformers').warning_advice('advice that stays')",
        "logging.get_logger('transformers.tokenization_utils_base').warning('PyTorch was not found. (a child)')"]))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(NOTICE) == 1 and "(a child)" in done.stderr        # only the child logger's copy
    assert "a warning that stays" in done.stderr and "advice that stays" in done.stderr


@pytest.mark.parametrize("content, message", [
    ('[{"problem": "x"', "not a JSON file: Expecting ',' delimiter: line 1 column 17"),
    ("", "the file is empty"),
    ("[]", "the JSON array holds no rows"),
    ("hello", "not a JSON file: Expecting value: line 1 column 1"),
    ('{"problem": "x"}', "expected a JSON array of rows, got a JSON object"),
    ('{"problem": "x"}\n{bad\n', "line 2: not valid JSON"),
])
def test_a_malformed_file_is_named_with_what_is_wrong_where(capsys, tmp_path, content, message):
    """The one reader of JSON/JSON-lines rows (data.items.read_rows; `datasets` says StopIteration or no position)."""
    path = tmp_path / ("bad.jsonl" if "{bad" in content else "bad.json")
    path.write_text(content)
    line = _failed(capsys, ["baselines", "--sets", str(path), "--json"])
    assert f"{path}: {message}" in line


def test_a_directory_named_like_a_file_and_json_lines_in_a_json_file(capsys, tmp_path):
    (tmp_path / "cl.json").mkdir()
    assert "cl.json does not exist as a file (it is a directory)" in _failed(
        capsys, ["baselines", "--sets", str(tmp_path / "cl.json"), "--json"])
    gen = tmp_path / "gen.json"
    assert main(["generate", "--n", "2", "--out", str(gen)]) == 0
    lines = tmp_path / "lines.json"                        # JSON lines under a .json name, as `datasets` allows
    lines.write_text("".join(json.dumps(row) + "\n" for row in json.loads(gen.read_text())))
    capsys.readouterr()
    assert main(["baselines", "--sets", f"{gen},{lines}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report[str(gen)] == report[str(lines)] and report[str(gen)]["n"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--format", "cladder", "--tasks", "ATE", "--style", "letters"], "--tasks, --style shape(s) CauGym-format"),
    (["--format", "cladder", "--precision", "1"], "--precision shape(s) CauGym-format problems"),
    (["--query-types", "ate"], "--query-types is for --format cladder"),
])
def test_generate_refuses_an_option_of_the_other_format(capsys, tmp_path, argv, message):
    out = tmp_path / "gen.json"
    assert message in _failed(capsys, ["generate", "--n", "2", "--out", str(out), *argv])
    assert not out.exists()


def test_a_download_that_cannot_connect_names_the_url_and_creates_nothing(capsys, tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    line = _failed(capsys, ["download", "--only", "causalprobe", "--dest", str(tmp_path / "d")])
    assert "cannot fetch https://raw.githubusercontent.com/" in line and "CausalProbe-E.json" in line
    assert "Name or service not known" in line and not (tmp_path / "d").exists()


def test_parquet_sets_and_a_directory_as_generate_output(capsys, tmp_path):
    import datasets

    gen = tmp_path / "gen.json"
    assert main(["generate", "--n", "3", "--out", str(gen)]) == 0
    datasets.Dataset.from_list(json.loads(gen.read_text())).to_parquet(str(tmp_path / "gen.parquet"))
    capsys.readouterr()
    assert main(["baselines", "--sets", f"{gen},{tmp_path / 'gen.parquet'}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report[str(gen)] == report[str(tmp_path / "gen.parquet")]
    assert "is a directory; give the JSON file to write" in _failed(capsys, ["generate", "--n", "2", "--out",
                                                                            str(tmp_path)])
