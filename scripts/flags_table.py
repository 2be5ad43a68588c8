"""Write train.py's flag reference (markdown, grouped as in Parameter.py) to docs/flags.md."""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from Parameter import build_parser  # noqa: E402

OUT = os.path.join(ROOT, "docs", "flags.md")


def flags_markdown() -> str:
    lines = ["Flags of `train.py`, generated from Parameter.py by `python scripts/flags_table.py`: do not edit by hand."]
    for group in build_parser()._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and a.dest != "help"]
        if not actions:
            continue
        lines.append(f"\n**{group.title}**\n\n| flag | default | meaning |\n|---|---|---|")
        for a in actions:
            default = "" if a.default is None or a.default is False else f"`{a.default}`"
            choices = f" ({', '.join(map(str, a.choices))})" if a.choices else ""
            names = " / ".join(f"`{o}`" for o in a.option_strings)
            lines.append(f"| {names} | {default} | {(a.help or '').replace('|', '/')}{choices} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int | str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if docs/flags.md is out of date")
    text = flags_markdown()
    if ap.parse_args(argv).check:  # a message (exit status 1) when the file is not what the flags give today
        current = open(OUT, encoding="utf-8").read() if os.path.isfile(OUT) else ""
        return 0 if current == text else f"{OUT} is out of date: run python scripts/flags_table.py"
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
