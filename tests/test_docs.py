"""The README's commands work on a fresh clone: CI runs its set-up and test commands, no committed run
holds the folder of one of its training commands, and docs/flags.md is the generated flag reference."""
import os
import re
import shlex
import subprocess
import sys

from conftest import ROOT
from Parameter import default_run_name, parse_args


def readme_train_commands() -> list[list[str]]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        match = re.search(r"python train\.py([^#`]*)", line)
        if match and "<" not in match.group(1):
            commands.append(shlex.split(match.group(1)))
    return commands


def test_no_committed_run_holds_the_folder_of_a_readme_command():
    commands = readme_train_commands()
    assert len(commands) >= 2
    for argv in commands:
        args = parse_args(argv)
        if args.eval_only or args.resume or args.config:
            continue
        folder = os.path.join(ROOT, args.results_dir, args.dataset, args.run_name or default_run_name(args))
        assert not os.path.exists(folder), f"README command {' '.join(argv)} would stop: {folder} is committed"


def test_flag_reference_is_generated_and_current():
    res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "flags_table.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_ci_runs_the_readme_commands():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    for command in ("pip install torch==2.13.0 -r requirements-dev.txt", "python -m pytest -q"):
        assert command in readme and command in ci
    assert "python scripts/get_data.py" in readme and "python scripts/get_data.py --from ../shared/data" in ci
