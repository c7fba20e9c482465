"""The parsed gin configuration, read back through gin's public API only.

gin offers no public iterator over its bindings, but it prints them
(`gin.config_str()`) in its own syntax, which its public parser reads back.
`bindings()` does exactly that, so the run fingerprint (run_dir.py) and the
required-macro check (cli.py) never touch gin's private state.
"""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import gin
import gin.config
import gin.config_parser


class Binding(NamedTuple):
    """One bound parameter: `scope/selector.arg_name = value` (selector as gin registered it)."""

    scope: str
    selector: str
    arg_name: str
    value: Any


def bindings() -> Iterator[Binding]:
    """Every parameter bound in the current gin configuration (macros: selector 'gin.macro', arg 'value').

    Values are as gin parsed them: literals, or `gin.config.ConfigurableReference`
    for `@name` / `%MACRO` references. Raises whatever gin raises for an
    unparsable configuration (cannot happen for one gin itself printed).
    """
    parser = gin.config_parser.ConfigParser(gin.config_str(), gin.config.ParserDelegate())
    for statement in parser:
        if not isinstance(statement, gin.config_parser.BindingStatement):
            continue
        scope, selector, arg_name, value = statement.scope, statement.selector, statement.arg_name, statement.value
        if not arg_name:  # a macro, stored by gin as (NAME, 'gin.macro', 'value')
            yield Binding(f"{scope}/{selector}" if scope else selector, "gin.macro", "value", value)
        else:
            key = gin.config.ParsedBindingKey.parse((scope, selector, arg_name))
            yield Binding(key.scope, key.complete_selector, key.arg_name, value)


def macro_references(value: Any) -> set[str]:
    """Names of the macros `%NAME` that a bound value refers to (inside lists, tuples, dicts too)."""
    out: set[str] = set()
    for ref in gin.config.iterate_references(value, to=gin.config.get_configurable(gin.config.macro)):
        if ref.scopes:
            out.add(ref.scopes[-1])
    return out


def is_required(value: Any) -> bool:
    """True for `gin.REQUIRED` or its parsed form `%gin.REQUIRED`."""
    return value is gin.REQUIRED or (
        isinstance(value, gin.config.ConfigurableReference) and value.configurable.name == "constant"
        and value.scopes == ["gin.REQUIRED"]
    )
