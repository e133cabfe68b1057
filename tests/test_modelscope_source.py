"""ModelScopeSource against the loopback ModelScope server: resolve, locate, mapping, auth, env."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qwen_fetch.core.errors import ConfigError, ExitCode, NotFoundError, SourceError
from qwen_fetch.core.manifest import ListingError
from qwen_fetch.core.paths import safe_relpath
from qwen_fetch.net.location import FileLocation
from qwen_fetch.net.pools import Pools
from qwen_fetch.sources.config import SourceConfig, load_config, parse_config, with_modelscope_endpoint
from qwen_fetch.sources.modelscope import ModelScopeSource
from qwen_fetch.sources.registry import make_source
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.modelscope_hub import DEFAULT_EXTRA_FILES, ModelScopeHubServer, MSFaults, ms_commit
from tests.support.repo import RepoStore

TOKEN = "ms-secret-token-1234"


@pytest.fixture(autouse=True)
def _no_modelscope_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN", "MODELSCOPE_API_TOKEN", "QF_MS_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def ms_store(tmp_path: Path) -> RepoStore:
    store = RepoStore(tmp_path / "ms-store")
    add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20)
    add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20, seed=1, revision="v1.0")
    return store


@pytest.fixture
def ms(ms_store: RepoStore) -> Iterator[ModelScopeHubServer]:
    with ModelScopeHubServer(ms_store, extra_files={**DEFAULT_EXTRA_FILES, "README.md": b"# ModelScope card\n"},
                             tags=["v1.0"]) as server:
        yield server


def get(loc: FileLocation, **headers: str) -> httpx.Response:
    """GET a location as the engine does: through pools, with the location's own headers."""
    with Pools(1) as http:
        return http.client(loc.route).get(loc.url, headers=[*loc.headers, *headers.items()])


def source(url: str, **kw: object) -> ModelScopeSource:
    cfg = SourceConfig(name="ms", kind="modelscope", endpoint=url, revision="master", **kw)  # type: ignore[arg-type]
    src = make_source(cfg)
    assert isinstance(src, ModelScopeSource)
    return src


def test_resolve_lists_store_files_plus_modelscope_extras(ms: ModelScopeHubServer, ms_store: RepoStore) -> None:
    src = source(ms.url)
    assert src.default_revision() == "master"
    listing = src.resolve(QWEN3_VL_8B, "master")
    hf_commit = ms_store.refs(QWEN3_VL_8B)["main"]
    assert listing.commit == ms_commit(hf_commit, "head") != hf_commit  # ModelScope's own id, newest change
    assert (listing.source, listing.repo_id, listing.revision) == ("ms", QWEN3_VL_8B, "master")
    by = listing.by_path()
    store_files = {sf.path: sf for sf in ms_store.files(QWEN3_VL_8B, hf_commit)}
    assert set(by) == set(store_files) | {"configuration.json"}
    for path, sf in store_files.items():
        if path != "README.md":
            assert (by[path].size, by[path].sha256) == (sf.size, sf.sha256), path
    readme = b"# ModelScope card\n"
    assert by["README.md"].sha256 == hashlib.sha256(readme).hexdigest() != store_files["README.md"].sha256
    assert by["model-00001-of-00004.safetensors"].lfs
    assert [f.path for f in listing.files] == sorted(by)


def test_resolve_a_tag(ms: ModelScopeHubServer, ms_store: RepoStore) -> None:
    listing = source(ms.url).resolve(QWEN3_VL_8B, "v1.0")
    assert listing.commit == ms_commit(ms_store.refs(QWEN3_VL_8B)["v1.0"], "head")


def test_unknown_revision_names_what_exists(ms: ModelScopeHubServer) -> None:
    with pytest.raises(NotFoundError) as info:
        source(ms.url).resolve(QWEN3_VL_8B, "main")  # HF's default branch is not ModelScope's
    assert info.value.exit_code == ExitCode.SOURCE
    assert "master" in (info.value.hint or "") and "v1.0" in (info.value.hint or "")
    assert not ms.requests_to("/repo/files")  # refused before listing


def test_unknown_repo_is_not_found(ms: ModelScopeHubServer) -> None:
    with pytest.raises(NotFoundError):
        source(ms.url).resolve("Qwen/NoSuchModel", "master")


def test_server_error_is_a_source_error(ms: ModelScopeHubServer) -> None:
    ms.faults.statuses["api"] = [503]
    with pytest.raises(SourceError) as info:
        source(ms.url).resolve(QWEN3_VL_8B, "master")
    assert info.value.exit_code == ExitCode.SOURCE and "503" in info.value.message


def test_down_server_is_unreachable(ms: ModelScopeHubServer) -> None:
    ms.faults.down = True
    with pytest.raises(SourceError) as info:
        source(ms.url).resolve(QWEN3_VL_8B, "master")
    assert info.value.reference == "source-unreachable"


@pytest.mark.parametrize("body,exc", [
    (b"not json", ListingError),
    ({"Code": 200, "Success": True, "Data": {"Files": [{"Path": "../x", "Type": "blob", "Size": 1}]}}, Exception),
    ({"Code": 200, "Data": {"Files": []}}, ListingError),  # no Success
    ({"Code": 200, "Success": True, "Data": {"Files": []}}, ListingError),  # names no commit
])
def test_malformed_listing_from_the_server_refused(ms: ModelScopeHubServer, body: object,
                                                   exc: type[Exception]) -> None:
    ms.faults.listing[QWEN3_VL_8B] = body
    with pytest.raises(exc) as info:
        source(ms.url).resolve(QWEN3_VL_8B, "master")
    assert getattr(info.value, "exit_code", None) == ExitCode.INTEGRITY


def test_locate_addresses_the_revision_name_and_honours_range(ms: ModelScopeHubServer, ms_store: RepoStore) -> None:
    src = source(ms.url)
    listing = src.resolve(QWEN3_VL_8B, "master")
    shard = listing.by_path()["model-00002-of-00004.safetensors"]
    loc = src.locate(QWEN3_VL_8B, listing.commit, shard.path)
    assert loc.source == "ms" and "Revision=master" in loc.url and "FilePath=model-00002" in loc.url
    disk = ms_store.file(QWEN3_VL_8B, ms_store.refs(QWEN3_VL_8B)["main"], shard.path)
    assert disk is not None
    data = disk.disk.read_bytes()
    r = get(loc, Range="bytes=100-199")
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    full = get(loc)
    assert hashlib.sha256(full.content).hexdigest() == shard.sha256


def test_locate_with_a_tag_name(ms: ModelScopeHubServer) -> None:
    src = source(ms.url)
    loc = src.locate(QWEN3_VL_8B, "v1.0", safe_relpath("config.json"))
    assert "Revision=v1.0" in loc.url and get(loc).status_code == 200


def test_model_map_lowercase_org(ms_store: RepoStore) -> None:
    with ModelScopeHubServer(ms_store, repos={"qwen/Qwen3-VL-8B-Instruct": QWEN3_VL_8B}) as server:
        with pytest.raises(NotFoundError):
            source(server.url).resolve(QWEN3_VL_8B, "master")
        cfg = parse_config(f"sources:\n  - name: ms\n    kind: modelscope\n    endpoint: {server.url}\n"
                           "    model_map: {'Qwen/': 'qwen/'}\n", "t.yaml")
        src = make_source(cfg.get("ms"))
        listing = src.resolve(QWEN3_VL_8B, src.default_revision())
        assert listing.repo_id == QWEN3_VL_8B  # the user's id; the mapped one is only on the wire
        loc = src.locate(QWEN3_VL_8B, listing.commit, safe_relpath("config.json"))
        assert "/models/qwen/Qwen3-VL-8B-Instruct/repo?" in loc.url
        assert get(loc).status_code == 200
        assert all("/models/qwen/" in r["path"] for r in server.requests_to("/api/v1/models/")[2:])


def test_token_goes_to_the_endpoint_only_never_to_storage(ms_store: RepoStore,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QF_MS_TOKEN", TOKEN)
    with ModelScopeHubServer(ms_store) as oss, \
            ModelScopeHubServer(ms_store, MSFaults(redirect_base=oss.url)) as server:
        src = source(server.url, token_env="QF_MS_TOKEN")
        listing = src.resolve(QWEN3_VL_8B, "master")
        loc = src.locate(QWEN3_VL_8B, listing.commit, safe_relpath("model-00001-of-00004.safetensors"))
        r = get(loc)
        assert r.status_code == 200 and r.url.port == oss.port  # followed the 302 to "object storage"
        api = server.requests_to("/api/v1/")
        assert api and all(q["headers"].get("Authorization") == f"Bearer {TOKEN}" for q in api)
        assert all(f"m_session_id={TOKEN}" in q["headers"].get("Cookie", "") for q in api)
        assert oss.log, "the download was not redirected"
        for q in oss.log:
            assert TOKEN not in str(q["headers"]), q
        assert TOKEN not in repr(loc) and TOKEN not in repr(vars(src)) and TOKEN not in repr(listing)


def test_no_token_no_auth_headers(ms: ModelScopeHubServer) -> None:
    source(ms.url, token_env="QF_MS_TOKEN").resolve(QWEN3_VL_8B, "master")
    assert all("Authorization" not in q["headers"] and "Cookie" not in q["headers"] for q in ms.log)


def test_denied_is_an_access_error(ms: ModelScopeHubServer) -> None:
    ms.faults.statuses["api"] = [403]
    with pytest.raises(SourceError) as info:
        source(ms.url).resolve(QWEN3_VL_8B, "master")
    assert info.value.reference == "access-denied" and "MODELSCOPE_API_TOKEN" in (info.value.hint or "")


# -- MODELSCOPE_DOMAIN / MODELSCOPE_ENDPOINT ------------------------------------------------


def test_builtin_modelscope_source_defaults() -> None:
    ms_cfg = load_config().get("modelscope")
    assert (ms_cfg.endpoint, ms_cfg.revision, ms_cfg.token_env) == (
        "https://www.modelscope.cn", "master", "MODELSCOPE_API_TOKEN")
    assert "configuration.json" in ms_cfg.optional_files and ms_cfg.endpoint_env is None


@pytest.mark.parametrize("env,value,expected", [
    ("MODELSCOPE_DOMAIN", "www.modelscope.ai", "https://www.modelscope.ai"),
    ("MODELSCOPE_DOMAIN", "http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ("MODELSCOPE_ENDPOINT", "https://ms.internal.example", "https://ms.internal.example"),
])
def test_modelscope_env_overrides_the_endpoint(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                               expected: str) -> None:
    monkeypatch.setenv(env, value)
    cfg = load_config()
    assert cfg.get("modelscope").endpoint == expected and cfg.get("modelscope").endpoint_env == env
    assert cfg.get("huggingface").endpoint == "https://huggingface.co"  # other kinds untouched


def test_modelscope_endpoint_wins_over_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSCOPE_DOMAIN", "a.example")
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "https://b.example")
    assert load_config().get("modelscope").endpoint == "https://b.example"


@pytest.mark.parametrize("value", ["http://", "https://host/api/v1", "ftp://x"])
def test_bad_modelscope_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MODELSCOPE_DOMAIN", value)
    with pytest.raises(ConfigError) as info:
        with_modelscope_endpoint(parse_config("sources:\n  - {name: m, kind: modelscope, "
                                              "endpoint: 'https://x.example'}\n", "t"))
    assert "MODELSCOPE_DOMAIN" in info.value.message


def test_modelscope_domain_reaches_the_source(ms: ModelScopeHubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSCOPE_DOMAIN", ms.url)
    src = make_source(load_config().get("modelscope"))
    assert src.resolve(QWEN3_VL_8B, "master").files


def test_the_token_is_never_offered_to_another_origin() -> None:
    """The token gives headers for the endpoint's own origin only (defence in depth beyond httpx's redirect rule)."""
    from qwen_fetch.net.location import OriginToken
    from qwen_fetch.sources.modelscope import SESSION_COOKIE

    token = OriginToken(TOKEN, "https://www.modelscope.cn", SESSION_COOKIE)
    assert token.headers("https://oss.example/obj") == ()
    assert token.headers("http://www.modelscope.cn/api/v1/models/a/b/revisions") == ()  # another scheme, port
    same = dict(token.headers("https://www.modelscope.cn/api/v1/models/a/b/revisions"))
    assert same == {"Authorization": f"Bearer {TOKEN}", "Cookie": f"m_session_id={TOKEN}"}
    assert TOKEN not in repr(token)
