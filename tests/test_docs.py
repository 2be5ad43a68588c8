"""The README documents every flag, and its set-up/test commands are the ones CI runs."""
import os

from conftest import ROOT
from Parameter import build_parser


def test_every_flag_is_in_the_readme():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    missing = [o for a in build_parser()._actions for o in a.option_strings
               if o.startswith("--") and o != "--help" and f"`{o}`" not in readme]
    assert missing == [], f"add to README (python scripts/flags_table.py): {missing}"


def test_ci_runs_the_readme_commands():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    for command in ("pip install torch==2.13.0 -r requirements-dev.txt", "python -m pytest -q"):
        assert command in readme and command in ci
    assert "python scripts/get_data.py" in readme and "python scripts/get_data.py --from ../shared/data" in ci
