"""The source registry: kind name -> the module that owns everything about that kind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qwen_fetch.core.errors import ConfigError, ExitCode
from qwen_fetch.core.manifest import Pin, RepoListing, SourceRevision
from qwen_fetch.sources.base import RevisionContext
from qwen_fetch.sources.config import SourceConfig, parse_config
from qwen_fetch.sources.registry import KIND_NAMES, default_revision, kind_of, make_source, source_kind, store_kinds

HF_COMMIT = "a" * 40
HF_OTHER = "b" * 40
MS_COMMIT = "c" * 40


def one_source(kind: str, endpoint: str, extra: str = "") -> SourceConfig:
    text = f"sources:\n  - name: s\n    kind: {kind}\n    endpoint: {endpoint}\n{extra}"
    return parse_config(text, "m.yaml").sources[0]


ENDPOINTS = {"hf": "https://hf.example", "modelscope": "https://ms.example", "dir": "/srv/models",
             "s3": "s3://bucket/prefix"}


def test_every_registered_kind_is_owned_by_a_module_of_that_name() -> None:
    assert KIND_NAMES == ("hf", "modelscope", "dir", "s3")
    for name in KIND_NAMES:
        kind = source_kind(name)
        assert kind.name == name
        assert type(kind).__module__.startswith("qwen_fetch.sources.")


@pytest.mark.parametrize("kind,default", [("hf", "main"), ("modelscope", "master"), ("dir", "main"), ("s3", "main")])
def test_each_kind_has_its_default_revision(kind: str, default: str) -> None:
    sc = one_source(kind, ENDPOINTS[kind])
    assert default_revision(sc) == default
    assert default_revision(one_source(kind, ENDPOINTS[kind], "    revision: v2\n")) == "v2"


def test_unknown_kind_in_mirrors_yaml_is_one_line_with_a_hint() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("sources:\n  - name: a\n    kind: ftp\n    endpoint: http://x\n", "m.yaml")
    err = ei.value
    assert err.message == "m.yaml:3: unknown kind 'ftp' (one of: hf, modelscope, dir, s3)"
    assert err.hint and err.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("call", [make_source, default_revision, kind_of])
def test_unknown_kind_reaching_the_registry_is_the_same_one_line_error(call) -> None:  # type: ignore[no-untyped-def]
    sc = SourceConfig(name="x", kind="ftp", endpoint="ftp://x")
    with pytest.raises(ConfigError) as ei:
        call(sc)
    err = ei.value
    assert err.message == "source 'x': kind 'ftp' is not supported by this build"
    assert err.hint == "use kind: hf, modelscope, dir or s3"
    assert "\n" not in err.message and err.exit_code == ExitCode.USAGE


def test_unknown_kind_on_the_command_line_is_exit_2_without_traceback(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "m.yaml"
    cfg.write_text("sources:\n  - name: a\n    kind: ftp\n    endpoint: http://x\n")
    r = cli("mirrors", "--config", str(cfg))
    assert r.exit_code == int(ExitCode.USAGE)
    assert "unknown kind 'ftp'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("kind,endpoint,needle", [
    ("hf", "s3://b/p", "must be an http(s) URL"),
    ("modelscope", "/srv/x", "must be an http(s) URL"),
    ("dir", "relative/path", "must be an absolute path or file:// URL"),
    ("s3", "https://bucket", "must look like s3://bucket/prefix"),
])
def test_each_kind_checks_its_own_endpoint(kind: str, endpoint: str, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        one_source(kind, endpoint)
    assert ei.value.message == f"m.yaml:4: endpoint {endpoint!r} {needle}"


def test_kind_specific_keys_belong_to_their_kind() -> None:
    s3 = one_source("s3", ENDPOINTS["s3"], "    s3_endpoint_url: http://minio.local:9000/\n")
    assert s3.s3_endpoint_url == "http://minio.local:9000"
    with pytest.raises(ConfigError, match=r"m.yaml:5: unknown key 's3_endpoint_url'"):
        one_source("hf", ENDPOINTS["hf"], "    s3_endpoint_url: http://minio.local:9000\n")
    with pytest.raises(ConfigError, match="only http:// proxies"):
        one_source("s3", ENDPOINTS["s3"], "    proxy: socks5://127.0.0.1:1080\n")
    assert one_source("hf", ENDPOINTS["hf"], "    proxy: socks5://127.0.0.1:1080\n").proxy is not None


def test_modelscope_fills_in_its_defaults_unless_given() -> None:
    ms = one_source("modelscope", ENDPOINTS["modelscope"])
    assert (ms.revision, ms.token_env) == ("master", "MODELSCOPE_API_TOKEN")
    assert "configuration.json" in ms.optional_files
    own = one_source("modelscope", ENDPOINTS["modelscope"], "    token_env: MY_MS\n    optional_files: []\n")
    assert (own.token_env, own.optional_files) == ("MY_MS", ())
    assert one_source("hf", ENDPOINTS["hf"]).optional_files == ()


# -- which revision each kind is asked for (pure) ------------------------------------------

KINDS_BY_NAME = {"hub": "hf", "mirror": "hf", "ms": "modelscope", "store": "dir"}
SC = {name: SourceConfig(name=name, kind=kind, endpoint="x", revision="master" if kind == "modelscope" else None)
      for name, kind in KINDS_BY_NAME.items()}
PIN = Pin(revision="v1", commit=HF_COMMIT, source="hub", files=())
PIN_MS = Pin(revision="v1", commit=HF_COMMIT, source="hub", files=(),
             sources=(("ms", SourceRevision("release", MS_COMMIT)),))
PIN_GONE = Pin(revision="v1", commit=HF_COMMIT, source="gone", files=())
PRIMARY = RepoListing(source="hub", repo_id="Q/M", revision="v1", commit=HF_COMMIT, files=())
PRIMARY_MS = RepoListing(source="ms", repo_id="Q/M", revision="v1", commit=MS_COMMIT, files=())

REVISION_CASES = [
    # (case, source, pin, primary, --revision, expected)
    ("pin's own hub: its commit", "hub", PIN, None, None, HF_COMMIT),
    ("hub of the pin's family: the pinned commit", "mirror", PIN, None, None, HF_COMMIT),
    ("modelscope, pin from an HF hub: its own default branch", "ms", PIN, None, None, "master"),
    ("modelscope, revision recorded in the pin: by name", "ms", PIN_MS, None, None, "release"),
    ("pin from a source no longer configured: taken for an HF hub", "mirror", PIN_GONE, None, None, HF_COMMIT),
    ("... and not for ModelScope", "ms", PIN_GONE, None, None, "master"),
    ("store: always the pinned commit", "store", PIN, None, None, HF_COMMIT),
    ("store: the primary's commit", "store", None, PRIMARY, "v1", HF_COMMIT),
    ("fallback of the primary's family: its commit", "mirror", None, PRIMARY, "v1", HF_COMMIT),
    ("modelscope fallback of a modelscope primary: by name", "ms", None, PRIMARY_MS, None, "v1"),
    ("modelscope fallback of an HF primary, a tag asked for", "ms", None, PRIMARY, "v1", "v1"),
    ("main means each hub's own default", "ms", None, None, "main", "master"),
    ("master too", "hub", None, None, "master", "main"),
    ("nothing asked: the default", "hub", None, None, None, "main"),
    ("a tag asked for", "hub", None, None, "v2", "v2"),
    ("a commit of another family: the default", "ms", None, PRIMARY, HF_OTHER, "master"),
]


@pytest.mark.parametrize("name,pin,primary,requested,expected", [c[1:] for c in REVISION_CASES],
                         ids=[c[0] for c in REVISION_CASES])
def test_revision_each_kind_is_asked_for(name: str, pin: Pin | None, primary: RepoListing | None,
                                         requested: str | None, expected: str) -> None:
    sc = SC[name]
    ctx = RevisionContext(pin=pin, primary=primary, requested=requested, kind_of=lambda n: KINDS_BY_NAME.get(n))
    assert kind_of(sc).revision_for(sc, ctx) == expected


def test_reading_mirrors_yaml_imports_no_http_stack() -> None:
    """Every kind module is imported to check its config keys: none of them may pull in httpx or boto3."""
    code = ("import sys\n"
            "from qwen_fetch.sources.config import parse_config\n"
            "parse_config('sources:\\n' + ''.join(f'  - {{name: {k}, kind: {k}, endpoint: {e!r}}}\\n'\n"
            f"             for k, e in {ENDPOINTS!r}.items()), 'm.yaml')\n"
            "heavy = [m for m in ('httpx', 'boto3', 'qwen_fetch.net.http') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sync_writes_only_into_the_kinds_that_are_stores(tmp_path: Path) -> None:
    from qwen_fetch.cli.sync_cmd import open_dest
    from qwen_fetch.core.errors import UsageError
    from qwen_fetch.store.backends import DirStore

    assert store_kinds() == ("dir", "s3")
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"sources:\n  - {{name: hub, kind: hf, endpoint: 'https://hf.example'}}\n"
                   f"  - {{name: nfs, kind: dir, endpoint: '{tmp_path / 'store'}'}}\n")
    with pytest.raises(UsageError) as ei:
        open_dest("hub", cfg, None)
    assert ei.value.message == "source 'hub' is kind hf; sync writes only to kind: dir or kind: s3"
    store = open_dest("nfs", cfg, None)
    assert isinstance(store, DirStore) and store.root == tmp_path / "store"
