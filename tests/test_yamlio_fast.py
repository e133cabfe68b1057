"""The fast YAML paths (libyaml events for reading, a direct writer for lockfiles) are byte- and
value-identical to PyYAML's own safe dumper and loader, which the lockfile format was defined by."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_fetch.core.errors import ConfigError
from qwen_fetch.core.yamlio import _CLoader, dump_yaml, load_yaml

# Strings that look like paths and ids, plus the ones YAML treats specially (quoted, typed, unicode, spaces).
_words = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.][A-Za-z0-9_./+@=-]{0,30}", fullmatch=True),
    st.sampled_from(["true", "no", "null", "~", "1", "0x1f", "1.5", ".inf", "1_000", "2026-12-03", "=", "-x",
                     "a: b", "a #b", "#c", "é/模型.bin", " lead", "trail ", "a\nb", "", "'q'", '"d"', "*x", "&a"]),
    st.text(max_size=12),
)
_scalars = st.one_of(_words, st.integers(-2**63, 2**63), st.booleans(), st.none())
_entries = st.dictionaries(_words, _scalars, min_size=1, max_size=5)
_docs = st.dictionaries(_words, st.one_of(_scalars, _entries, st.lists(_entries, min_size=1, max_size=4),
                                          st.dictionaries(_words, st.lists(_entries, min_size=1, max_size=3),
                                                          min_size=1, max_size=3)),
                        min_size=1, max_size=5)


def _pyyaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)


@settings(max_examples=300, deadline=None)
@given(_docs)
def test_dump_yaml_writes_what_pyyaml_writes(data: dict[str, Any]) -> None:
    assert dump_yaml(data) == _pyyaml(data)


@settings(max_examples=200, deadline=None)
@given(_docs)
def test_load_yaml_reads_what_pyyaml_reads(data: dict[str, Any]) -> None:
    text = _pyyaml(data)
    value, lines = load_yaml(text, "x.yaml")
    assert value == yaml.safe_load(text)
    assert lines[()] == 1


def test_a_lockfile_shape_takes_the_fast_writer() -> None:
    doc = {"version": 1, "models": {"Qwen/Qwen3-VL-8B-Instruct": [
        {"revision": "main", "commit": "a" * 40, "source": "hf",
         "files": [{"path": "model-00001-of-00004.safetensors", "size": 5, "sha256": "b" * 64, "lfs": True},
                   {"path": "config.json", "size": 7, "sha256": "c" * 64, "git_oid": "d" * 40}]}]}}
    text = dump_yaml(doc)
    assert text == _pyyaml(doc)
    assert text.splitlines()[3:6] == ["  - revision: main", "    commit: " + "a" * 40, "    source: hf"]


@pytest.mark.skipif(_CLoader is None, reason="PyYAML built without libyaml")
@pytest.mark.parametrize(("text", "message"), [
    ("a: &x [1, 2]\nb: *x\n", "anchors and aliases"),
    ("a: *nope\n", "malformed YAML"),
    ("a:\n" + "".join("  " * i + f"- k{i}:\n" for i in range(1, 40)) + "  " * 40 + "- 1\n", "nested more than"),
    ("- " * 200_000 + "x\n", "nested too deeply"),  # a deep one-liner: refused, never a crash
    ("a: [1,\n", "malformed YAML"),
])
def test_hostile_or_broken_yaml_is_refused_with_a_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(text, "x.yaml")
    assert message in exc.value.message
