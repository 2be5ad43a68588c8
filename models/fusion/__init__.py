"""Fusion of the syntactic and semantic GCN branches: modules in this folder, a registry keyed by --fusion.

A fusion is a class registered with ``@register_fusion("name")``. It is built as
``Fusion(dim, dropout=..., **options)`` and called as ``fusion(x, h_syn, h_sem, word_mask) -> (B, W, dim)``:
x is the residual stream (the encoder's word features), h_syn / h_sem the two GCN outputs, word_mask
(B, W) True on real words. Outputs at padding are zero, and real positions never depend on padding.

Its class attribute ``defaults`` names the options it accepts and their values when not given, e.g.
``{"cross_attention_heads": 8}``. Each option is a command-line flag, declared once with
``fusion_option(...)`` (in the file of the first fusion that needs it) and shared by every fusion
that lists it. train.py refuses an option the chosen fusion does not accept, and the run name holds
the options that differ from the fusion's defaults.

To add a fusion, add a file to this folder (every module here is imported) or call register_fusion
from your own code before train.main() parses the flags.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from torch import nn

FUSIONS: dict[str, type[nn.Module]] = {}
OPTIONS: dict[str, "FusionOption"] = {}


@dataclass(frozen=True)
class FusionOption:
    """One --flag of the fusions: its type (int, float or bool), help text and smallest valid value."""
    name: str
    type: type
    help: str
    minimum: float | None = None


def fusion_option(name: str, type: type, help: str, minimum: float | None = None) -> str:
    option = FusionOption(name, type, help, minimum)
    if OPTIONS.setdefault(name, option) != option:
        raise ValueError(f"fusion option --{name} is declared twice, differently")
    return name


def register_fusion(name: str):
    def register(cls):
        unknown = set(cls.defaults) - set(OPTIONS)
        if unknown:
            raise ValueError(f"fusion {name!r}: options {sorted(unknown)} are not declared with fusion_option()")
        FUSIONS[name] = cls
        return cls
    return register


def fusion_options(name: str, given: dict) -> dict:
    """The options `name` runs with: `given` (None = not given) over the fusion's defaults. Raises
    ValueError for an option the fusion does not accept or a value out of range."""
    if name not in FUSIONS:
        raise ValueError(f"--fusion {name!r}: choose from {sorted(FUSIONS)}")
    defaults = FUSIONS[name].defaults
    refused = [k for k, v in given.items() if v is not None and k not in defaults]
    if refused:
        takes = ", ".join(f"--{k}" for k in defaults) or "no options"
        raise ValueError(f"--{refused[0]} is not an option of --fusion {name} (it takes {takes})")
    options = {k: given[k] if given.get(k) is not None else v for k, v in defaults.items()}
    for k, v in options.items():
        if OPTIONS[k].minimum is not None and v < OPTIONS[k].minimum:
            raise ValueError(f"--{k} must be >= {OPTIONS[k].minimum:g} (got {v})")
    return options


def build_fusion(name: str, dim: int, dropout: float = 0.1, **given) -> nn.Module:
    return FUSIONS[name](dim, dropout=dropout, **fusion_options(name, given))


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
