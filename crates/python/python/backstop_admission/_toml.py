"""Keyword arguments of ``Limits(...)`` written as the TOML the native side parses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Dict, List, Mapping

SECTIONS = ("rate", "queue", "jobs", "resources")


def _value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        ns = value // timedelta(microseconds=1) * 1000
        return f'"{ns}ns"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"invalid `{name}`: {type(value).__name__} is not a number, bool, str or timedelta")


def limits_toml(settings: Mapping[str, Any]) -> str:
    """``rate_limit=30`` -> ``[rate]\\nlimit = 30``; ``shadow=True`` stays at the top."""
    top: List[str] = []
    sections: Dict[str, List[str]] = {}
    for name, value in settings.items():
        section, _, key = name.partition("_")
        if name == "shadow":
            top.append(f"shadow = {_value(name, value)}")
        elif section in SECTIONS and key:
            sections.setdefault(section, []).append(f"{key} = {_value(name, value)}")
        else:
            # Left to the parser, which names the key it does not know.
            top.append(f"{name} = {_value(name, value)}")
    lines = top[:]
    for section, entries in sections.items():
        lines.append(f"[{section}]")
        lines.extend(entries)
    return "\n".join(lines) + "\n"
