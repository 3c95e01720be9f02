"""Build argparse sub-commands from typed config dataclasses: the signature is the config.

Each command is ``run(cfg: SomeConfig)``. Every field becomes ``--field-name`` (``_`` → ``-``) with
its type, default and help taken from the config's ``Args:`` docstring; fields with
``metadata={"positional": True}`` are positional. ``--config FILE`` (YAML/JSON) supplies values
that flags then override.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from suan.utils.config import Config, ConfigError

MISSING = object()


@dataclasses.dataclass(frozen=True)
class Command:
    """A sub-command: its config class and the function that runs it."""

    config_cls: type[Config]
    target: str  # "module:function", imported only when the command runs (keeps --help fast)
    help: str

    def run(self, cfg: Config) -> Any:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)(cfg)


def field_help(cls: type) -> dict[str, str]:
    """Parse ``name: text`` entries of the ``Args:`` section of a class docstring."""
    doc = cls.__doc__ or ""
    section = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    out: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        m = re.match(r"^\s{4,8}(\w+):\s*(.*)$", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current and line.strip():
            out[current] += " " + line.strip()
    return out


def _parse_tuple(inner: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        return tuple(inner(t) for t in text.split(",") if t.strip())
    return parse


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[Config]) -> None:
    """One argument per field of ``cls``; defaults are left unset so ``--config`` can fill them."""
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON file of option values")
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else None
        text = helps.get(f.name, "")
        kwargs: dict[str, Any] = {"default": MISSING, "help": text + ("" if has_default else " (required)")}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            kwargs.update(choices=list(args), type=type(args[0]))
        elif origin is tuple:
            kwargs["type"] = _parse_tuple(args[0] if args else str)
            kwargs["metavar"] = "A,B,..."
        elif hint in (int, float, str):
            kwargs["type"] = hint
        if has_default and default not in (None, "", ()) and "Default:" not in text:
            kwargs["help"] += f" [default: {default}]"
        if f.metadata.get("positional"):
            kwargs.pop("help")
            parser.add_argument(f.name, nargs="?", help=text, **{k: v for k, v in kwargs.items()})
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)


def config_from_args(cls: type[Config], ns: argparse.Namespace) -> Config:
    """Merge ``--config`` file values with explicit flags and build the (validated) config."""
    values: dict[str, Any] = {}
    if getattr(ns, "config", None):
        values.update(_load_partial(ns.config))
    for f in dataclasses.fields(cls):
        v = getattr(ns, f.name, MISSING)
        if v is not MISSING and v is not None:
            values[f.name] = list(v) if isinstance(v, tuple) else v
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing required option(s): {', '.join('--' + m.replace('_', '-') for m in missing)}")
    return cls.from_dict(values)


def _load_partial(path: Path) -> dict[str, Any]:
    import json

    import yaml

    text = Path(path).read_text()
    data = yaml.safe_load(text) if Path(path).suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option values")
    return data


class _Parser(argparse.ArgumentParser):
    """argparse that takes a list opening with a negative number as a value: ``--grades -2,-1,0``.

    argparse reads a word that starts with "-" as an option unless it looks like one negative number;
    no option of ours looks like a number, so a comma list of numbers is a value too. Subparsers are built
    with the parent's class, so every command gets this.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d*\.?\d+(,-?\d*\.?\d+)*$")


def build_parser(prog: str, tree: dict[str, Any], description: str) -> argparse.ArgumentParser:
    """Parser for a tree of ``{name: Command | {name: Command, ...}}``."""
    parser = _Parser(prog=prog, description=description)
    _add_level(parser, tree, prog)
    return parser


def _add_level(parser: argparse.ArgumentParser, tree: dict[str, Any], path: str) -> None:
    subs = parser.add_subparsers(dest=f"cmd_{path.count(' ')}", metavar="COMMAND", required=True)
    for name, node in tree.items():
        if isinstance(node, Command):
            sub = subs.add_parser(name, help=node.help, description=node.help)
            add_config_arguments(sub, node.config_cls)
            sub.set_defaults(_command=node)
        else:
            sub = subs.add_parser(name, help=node.get("__help__", ""), description=node.get("__help__", ""))
            _add_level(sub, {k: v for k, v in node.items() if k != "__help__"}, f"{path} {name}")
