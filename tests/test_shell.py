"""The recipe's shell layer: utils/parse_options.sh and run.sh's option handling."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """#!/usr/bin/env bash
stage=0          # first stage
use_gpu=false    # a flag
my_name=abc      # a name
. {root}/utils/parse_options.sh
echo "stage=$stage use_gpu=$use_gpu my_name=$my_name rest=$*"
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "s.sh"
    path.write_text(SCRIPT.format(root=ROOT))
    return path


def run(script, *args):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True)


def test_overrides_and_positionals(script):
    out = run(script, "--stage", "3", "--my-name=x y", "--use-gpu", "true", "pos")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "stage=3 use_gpu=true my_name=x y rest=pos"


def test_help_lists_options_with_defaults(script):
    out = run(script, "--help")
    assert out.returncode == 0
    assert "--stage" in out.stdout and "first stage [0]" in out.stdout
    assert "--my-name" in out.stdout and "[abc]" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus", "1"], "unknown option --bogus"),
        (["--use-gpu", "maybe"], "takes true or false"),
        (["--stage"], "needs a value"),
    ],
)
def test_bad_options_fail_clearly(script, args, message):
    out = run(script, *args)
    assert out.returncode != 0 and message in out.stderr


def test_run_sh_help_and_unknown_option():
    out = subprocess.run(["bash", str(ROOT / "run.sh"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--stop-stage" in out.stdout and "--corpus" in out.stdout
    assert "--help-message" not in out.stdout
    out = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "--no-such-flag", "1"], capture_output=True, text=True
    )
    assert out.returncode != 0 and "unknown option" in out.stderr


def test_run_sh_tables_must_exist():
    out = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "--tables", "zz", "--stage", "7", "--stop-stage", "7"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "no table(s) ['zz']" in out.stderr
