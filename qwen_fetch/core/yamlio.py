"""Safe YAML loading that remembers line numbers, for errors that point at a line.

Scalars follow YAML 1.2's JSON schema, not PyYAML's YAML 1.1 defaults: an integer is
plain decimal (``1462``; not ``24:22``, ``0x5b6``, ``0o17``, ``1_000`` or ``0123``), a
boolean is ``true`` or ``false`` (not ``yes``, ``on``, ``True``), null is ``null``, ``~``
or nothing, and everything else is a string.  A value that reads differently under the
two versions is therefore never silently turned into a number: the file's own checks
then report it at its line ("expected an integer, got '24:22'").
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from qwen_fetch.core.errors import ConfigError

LineMap = dict[tuple[object, ...], int]

_TAG = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
# Every form read here as a number, boolean or null is one PyYAML's dumper also resolves so and
# therefore quotes when it writes a string: ``dump`` then ``load`` gives back the same strings.
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
_BOOL = {"true": True, "false": False}
_NULL = ("", "~", "null")


class _Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2 JSON-schema resolution of plain scalars (see the module docstring)."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, Any]]] = {}


for _tag, _regexp, _first in (
    ("bool", re.compile(r"^(?:true|false)$"), list("tf")),
    ("int", re.compile(f"^{_INT.pattern}$"), list("-0123456789")),
    ("float", re.compile(f"^{_FLOAT.pattern}$"), list("-0123456789")),
    ("null", re.compile(r"^(?:~|null|)$"), ["~", "n", ""]),
):
    _Resolver.add_implicit_resolver(f"{_TAG}{_tag}", _regexp, _first)


class _Loader(yaml.SafeLoader):
    """PyYAML's own composer with :class:`_Resolver`'s rules (used where libyaml is missing)."""

    yaml_implicit_resolvers = _Resolver.yaml_implicit_resolvers


MAX_DEPTH = 32  # our files nest 6 levels deep; a deeper document is hostile or broken

_CLoader = getattr(yaml, "CSafeLoader", None)  # libyaml's parser, where PyYAML was built with it


def _construct(node: yaml.Node, path: tuple[object, ...], lines: LineMap, where: str,
               seen: set[int] | None = None, keys: LineMap | None = None) -> Any:
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
            if keys is not None:
                keys[path + (key,)] = knode.start_mark.line + 1
            out[key] = _construct(vnode, path + (key,), lines, where, seen, keys)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), lines, where, seen, keys) for i, v in enumerate(node.value)]
    return _scalar(node, where)


def _scalar(node: yaml.Node, where: str) -> Any:
    if not isinstance(node, yaml.ScalarNode) or node.tag not in _ALLOWED_TAGS:
        raise ConfigError(f"{where}:{node.start_mark.line + 1}: a key must be a plain value",
                          hint="check the indentation")
    # Built here rather than by PyYAML's constructors, which read an explicit ``!!int 0x5b6`` or
    # ``!!bool yes`` by YAML 1.1 rules: a tagged value must have the plain form too.
    value, kind = node.value, node.tag[len(_TAG):]
    if kind == "str":
        return value
    if kind == "int" and _INT.fullmatch(value):
        return int(value)
    if kind == "float" and (_FLOAT.fullmatch(value) or _INT.fullmatch(value)):
        return float(value)
    if kind == "bool" and value in _BOOL:
        return _BOOL[value]
    if kind == "null" and value in _NULL:
        return None
    raise ConfigError(f"{where}:{node.start_mark.line + 1}: {value[:40]!r} is not a plain YAML 1.2 {kind}",
                      hint={"int": "write integers in plain decimal digits, e.g. 1462",
                            "bool": "write true or false"}.get(kind, "remove the !!tag and write the plain value"))


def _compose(text: str) -> yaml.Node | None:
    """The document's node tree.  With libyaml, its C parser makes the events and this loop builds the
    nodes (no recursion, so no depth can crash it; the pure-Python scanner costs ~10x more per entry,
    which a lockfile of 100,000 files feels); without libyaml, PyYAML's own composer."""
    if _CLoader is None:
        return yaml.compose(text, Loader=_Loader)  # type: ignore[no-any-return]
    resolver = _Resolver()
    stack: list[tuple[yaml.Node, list[Any]]] = []
    root: yaml.Node | None = None
    anchors: dict[str, yaml.Node] = {}

    def attach(node: yaml.Node) -> None:
        nonlocal root
        if stack:
            stack[-1][1].append(node)
        else:
            root = node

    for ev in yaml.parse(text, Loader=_CLoader):
        if isinstance(ev, yaml.ScalarEvent):
            tag = ev.tag
            if tag is None or tag == "!":
                tag = resolver.resolve(yaml.ScalarNode, ev.value, ev.implicit)
            node: yaml.Node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, style=ev.style)
            attach(node)
        elif isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            seq = isinstance(ev, yaml.SequenceStartEvent)
            tag = ev.tag
            if tag is None or tag == "!":
                tag = resolver.resolve(yaml.SequenceNode if seq else yaml.MappingNode, None, ev.implicit)
            items: list[Any] = []
            node = (yaml.SequenceNode if seq else yaml.MappingNode)(tag, items, ev.start_mark, None,
                                                                      flow_style=ev.flow_style)
            attach(node)
            stack.append((node, items))
            if len(stack) > 4 * MAX_DEPTH:  # _construct reports the line of anything past MAX_DEPTH
                raise RecursionError
        elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            node, items = stack.pop()
            node.end_mark = ev.end_mark
            if isinstance(node, yaml.MappingNode):
                node.value = list(zip(items[0::2], items[1::2]))
        elif isinstance(ev, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, f"found an alias *{ev.anchor}", ev.start_mark) \
                if ev.anchor not in anchors else _AliasFound(ev.start_mark)
        if isinstance(ev, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)) and ev.anchor:
            anchors[ev.anchor] = node
    return root


class _AliasFound(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


def load_yaml(text: str, where: str, key_lines: LineMap | None = None) -> tuple[Any, LineMap]:
    """Parse YAML with the safe loader; return the data and a path→line map (of each value).

    ``key_lines``, when given, is filled with the line of each mapping key, by the same paths.
    """
    try:
        node = _compose(text)
    except _AliasFound as exc:
        raise ConfigError(f"{where}:{exc.mark.line + 1}: YAML anchors and aliases (&name, *name) are not supported",
                          hint="write the value out in full") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "nesting depth" in problem:  # libyaml from PyYAML 6.0.4 on stops deep documents itself
            raise ConfigError(f"{where}{line}: malformed YAML: nested too deeply",
                              hint="the file is malformed or hostile; restore it from version control") from None
        raise ConfigError(f"{where}{line}: malformed YAML: {problem}",
                          hint="fix the YAML syntax at that line") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ConfigError(f"{where}: malformed YAML: nested too deeply",
                          hint="the file is malformed or hostile; restore it from version control") from None
    if node is None:
        return None, {}
    lines: LineMap = {}
    return _construct(node, (), lines, where, keys=key_lines), lines


def line_of(lines: LineMap, path: tuple[object, ...]) -> int | None:
    """The line of ``path`` or of its closest ancestor."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


# ---------------------------------------------------------------------------
# writing

_PLAIN = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./+@=-]*\Z")
_RESOLVER = yaml.resolver.Resolver()


def _plain(s: str) -> bool:
    """``s`` is written unquoted by PyYAML: conservative characters and no other type's look (1, true, ~)."""
    return bool(_PLAIN.match(s)) and _RESOLVER.resolve(yaml.ScalarNode, s, (True, False)) == "tag:yaml.org,2002:str"


class _Unusual(Exception):
    """A value the fast writer does not handle: the whole document goes through PyYAML instead."""


def _emit(value: Any, indent: str, out: list[str]) -> None:
    """Block-style YAML of a mapping, the way ``yaml.safe_dump(default_flow_style=False)`` writes it."""
    if not isinstance(value, dict) or not value:
        raise _Unusual
    for k, v in value.items():
        if not isinstance(k, str) or not _plain(k):
            raise _Unusual
        if isinstance(v, dict):
            out.append(f"{indent}{k}:\n")
            _emit(v, indent + "  ", out)
        elif isinstance(v, list):
            if not v:
                raise _Unusual
            out.append(f"{indent}{k}:\n")
            for item in v:  # PyYAML writes a mapping's sequences unindented
                inner: list[str] = []
                _emit(item, indent + "  ", inner)
                out.append(f"{indent}- " + inner[0][len(indent) + 2:])
                out.extend(inner[1:])
        else:
            out.append(f"{indent}{k}: {_scalar_text(v)}\n")


def _scalar_text(v: Any) -> str:
    if v is True or v is False:
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str) and _plain(v):
        return v
    raise _Unusual


def dump_yaml(data: dict[str, Any]) -> str:
    """``yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)``,
    written directly when every key and value is a plain scalar, mapping or list of mappings (PyYAML's
    representer and emitter cost ~1 ms per lockfile entry); anything else goes through PyYAML."""
    out: list[str] = []
    try:
        _emit(data, "", out)
    except _Unusual:
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)
    return "".join(out)
