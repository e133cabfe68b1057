"""Safe YAML loading that remembers line numbers, for errors that point at a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qwen_fetch.errors import ConfigError

LineMap = dict[tuple[object, ...], int]


_ALLOWED_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}


MAX_DEPTH = 32  # our files nest 6 levels deep; a deeper document is hostile or broken


def _construct(node: yaml.Node, path: tuple[object, ...], lines: LineMap, where: str,
               seen: set[int] | None = None) -> Any:
    seen = set() if seen is None else seen
    line = node.start_mark.line + 1
    if id(node) in seen:
        # An alias (*name) re-uses a node: refused, since nested aliases expand
        # exponentially ("billion laughs") and our files never need them.
        raise ConfigError(f"{where}:{line}: YAML anchors and aliases (&name, *name) are not supported",
                          hint="write the value out in full")
    seen.add(id(node))
    if len(path) > MAX_DEPTH:
        raise ConfigError(f"{where}:{line}: nested more than {MAX_DEPTH} levels deep",
                          hint="the file is malformed; check the indentation")
    lines[path] = line
    if node.tag not in _ALLOWED_TAGS:
        # Safe loading only: no object construction, no timestamps/binary surprises.
        raise ConfigError(f"{where}:{node.start_mark.line + 1}: unsupported YAML tag {node.tag!r}",
                          hint="only plain mappings, lists, strings, numbers and booleans are allowed")
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = _scalar(knode, where)
            if key in out:
                raise ConfigError(f"{where}:{knode.start_mark.line + 1}: duplicate key {key!r}",
                                  hint="remove one of the two entries")
            out[key] = _construct(vnode, path + (key,), lines, where, seen)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), lines, where, seen) for i, v in enumerate(node.value)]
    return _scalar(node, where)


def _scalar(node: yaml.Node, where: str) -> Any:
    if not isinstance(node, yaml.ScalarNode) or node.tag not in _ALLOWED_TAGS:
        raise ConfigError(f"{where}:{node.start_mark.line + 1}: a key must be a plain value",
                          hint="check the indentation")
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_yaml(text: str, where: str) -> tuple[Any, LineMap]:
    """Parse YAML with the safe loader; return the data and a path→line map."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}{line}: malformed YAML: {problem}",
                          hint="fix the YAML syntax at that line") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ConfigError(f"{where}: malformed YAML: nested too deeply",
                          hint="the file is malformed or hostile; restore it from version control") from None
    if node is None:
        return None, {}
    lines: LineMap = {}
    return _construct(node, (), lines, where), lines


def read_yaml_file(path: Path) -> tuple[Any, LineMap]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint="check the path and permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", hint="save the file as UTF-8") from None
    return load_yaml(text, str(path))


def line_of(lines: LineMap, path: tuple[object, ...]) -> int | None:
    """The line of ``path`` or of its closest ancestor."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
