"""Print the README's flag reference (markdown), grouped as in Parameter.py.

    python scripts/flags_table.py > /tmp/flags.md
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from Parameter import build_parser  # noqa: E402


def main():
    parser = build_parser()
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and a.dest != "help"]
        if not actions:
            continue
        print(f"\n**{group.title}**\n\n| flag | default | meaning |\n|---|---|---|")
        for a in actions:
            default = "" if a.default is None or a.default is False else f"`{a.default}`"
            choices = f" ({', '.join(map(str, a.choices))})" if a.choices else ""
            names = " / ".join(f"`{o}`" for o in a.option_strings)
            print(f"| {names} | {default} | {(a.help or '').replace('|', '/')}{choices} |")


if __name__ == "__main__":
    main()
