"""Pulls through real proxies: tinyproxy (HTTP CONNECT and absolute-form) and pproxy (SOCKS5).

Each test proves the bytes went through the proxy from the proxy's own log,
that ``NO_PROXY`` and ``proxy: none`` bypass it, and that the proxy's
credentials appear nowhere in what qwen-fetch prints (``--json``, ``--debug``,
errors).  The hubs listen on 127.0.0.1 and ``localhost``: nothing skips a proxy
for loopback unless ``NO_PROXY`` says so, which is why every run sets it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from qwen_fetch.store.hfcache import RepoCache
from tests.conftest import write_mirrors
from tests.support import proxies
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer

USER, PASSWORD = "qfuser", "s3cret-Pa55"


def _need(kind: str) -> None:
    why = proxies.missing(kind)
    if why:
        pytest.skip(why)


@pytest.fixture
def tls_hub(store, sharded_repo, tmp_path: Path) -> Iterator[tuple[HubServer, Path]]:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "hub-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with HubServer(store, ssl_context=ctx) as hub:
        yield hub, ca_file


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[proxies.Proxy]:
    _need("tinyproxy")
    with proxies.tinyproxy(tmp_path / "tinyproxy", user=USER, password=PASSWORD) as p:
        yield p


@pytest.fixture
def socks(tmp_path: Path) -> Iterator[proxies.Proxy]:
    _need("pproxy")
    with proxies.pproxy(tmp_path / "pproxy", user=USER, password=PASSWORD) as p:
        yield p


def _pull(cli, cfg: Path, cache: str, env: dict[str, str], *extra: str):  # type: ignore[no-untyped-def]
    return cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", cache, "--no-smoke",
               "--lock", f"{cache}.lock", *extra, env=env)


def _assert_pulled(store, commit: str, cache: str) -> None:  # type: ignore[no-untyped-def]
    snap = RepoCache(Path(cache), QWEN3_VL_8B).snapshot_dir(commit)
    for f in store.files(QWEN3_VL_8B, commit):
        assert (snap / f.path).read_bytes() == f.disk.read_bytes(), f.path


def _connects(log: str) -> int:
    """CONNECT requests in a tinyproxy log (its log level for connections is also spelled CONNECT)."""
    return log.count("): CONNECT ")


def _no_secrets(*texts: str) -> None:
    for t in texts:
        assert PASSWORD not in t and USER not in t, t


def test_https_pull_tunnels_through_connect_proxy(cli, tls_hub, tinyproxy, store, sharded_repo,  # type: ignore[no-untyped-def]
                                                  tmp_path: Path) -> None:
    hub, ca = tls_hub
    cfg = write_mirrors(tmp_path / "mirrors.yaml", ("tls", hub.url))
    env = {"HTTPS_PROXY": tinyproxy.url, "NO_PROXY": "", "SSL_CERT_FILE": str(ca)}
    r = _pull(cli, cfg, "cache", env, "--json", "--debug")
    assert r.exit_code == 0, r.stderr
    _assert_pulled(store, sharded_repo, "cache")
    tunnels = tinyproxy.log_text().count(f"CONNECT localhost:{hub.port} ")
    assert tunnels >= 1, tinyproxy.log_text()
    # every connection the hub accepted came through a tunnel: one CONNECT per hub connection
    assert tunnels == len({e["port"] for e in hub.log}), (tunnels, len(hub.log))
    _no_secrets(r.stdout, r.stderr)


def test_no_proxy_and_proxy_none_go_direct(cli, tls_hub, tinyproxy, store, sharded_repo,  # type: ignore[no-untyped-def]
                                           tmp_path: Path) -> None:
    hub, ca = tls_hub
    cfg = write_mirrors(tmp_path / "mirrors.yaml", ("tls", hub.url))
    env = {"HTTPS_PROXY": tinyproxy.url, "SSL_CERT_FILE": str(ca)}
    for i, no_proxy in enumerate(("localhost", ".localhost:%d" % hub.port, "*")):
        r = _pull(cli, cfg, f"cache-np{i}", {**env, "NO_PROXY": no_proxy})
        assert r.exit_code == 0, (no_proxy, r.stderr)
        _assert_pulled(store, sharded_repo, f"cache-np{i}")
    # a NO_PROXY entry for another port does not bypass
    r = _pull(cli, cfg, "cache-port", {**env, "NO_PROXY": f"localhost:{hub.port + 1}"})
    assert r.exit_code == 0, r.stderr
    assert tinyproxy.log_text().count(f"CONNECT localhost:{hub.port} ") >= 1
    before = _connects(tinyproxy.log_text())
    # proxy: none on the source: direct even with the proxy variables set and NO_PROXY empty
    cfg_none = write_mirrors(tmp_path / "none.yaml", ("tls", hub.url))
    cfg_none.write_text(cfg_none.read_text() + "    proxy: none\n")
    r = _pull(cli, cfg_none, "cache-none", {**env, "NO_PROXY": "", "ALL_PROXY": tinyproxy.url})
    assert r.exit_code == 0, r.stderr
    _assert_pulled(store, sharded_repo, "cache-none")
    assert _connects(tinyproxy.log_text()) == before


def test_plain_http_goes_in_absolute_form(cli, hub, tinyproxy, store, sharded_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_mirrors(tmp_path / "mirrors.yaml", ("plain", hub.url))
    r = _pull(cli, cfg, "cache", {"HTTP_PROXY": tinyproxy.url, "NO_PROXY": ""}, "--json")
    assert r.exit_code == 0, r.stderr
    _assert_pulled(store, sharded_repo, "cache")
    log = tinyproxy.log_text()
    assert f"GET {hub.url}/{QWEN3_VL_8B}/resolve/" in log, log
    assert _connects(log) == 0
    _no_secrets(r.stdout, r.stderr)


def test_socks5h_from_mirrors_yaml_and_socks5_from_all_proxy(cli, tls_hub, socks, store, sharded_repo,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    hub, ca = tls_hub
    cfg = write_mirrors(tmp_path / "mirrors.yaml", ("tls", hub.url))
    cfg.write_text(cfg.read_text() + f"    proxy: {socks.url.replace('socks5://', 'socks5h://')}\n")
    # the source's proxy wins over the environment (a dead proxy) and over NO_PROXY
    env = {"SSL_CERT_FILE": str(ca), "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "*"}
    r = _pull(cli, cfg, "cache-h", env, "--json", "--debug")
    assert r.exit_code == 0, r.stderr
    _assert_pulled(store, sharded_repo, "cache-h")
    assert f"-> localhost:{hub.port}" in socks.log_text()  # socks5h: the proxy resolved the name
    _no_secrets(r.stdout, r.stderr)

    cfg_env = write_mirrors(tmp_path / "env.yaml", ("tls", hub.url))
    r = _pull(cli, cfg_env, "cache-5", {"SSL_CERT_FILE": str(ca), "ALL_PROXY": socks.url, "NO_PROXY": ""})
    assert r.exit_code == 0, r.stderr
    _assert_pulled(store, sharded_repo, "cache-5")
    assert f"-> 127.0.0.1:{hub.port}" in socks.log_text()  # socks5: resolved here, the proxy got an address


def test_proxy_failures_are_one_line_and_never_show_credentials(cli, tls_hub, tinyproxy, socks,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    hub, ca = tls_hub
    cfg = write_mirrors(tmp_path / "mirrors.yaml", ("tls", hub.url))
    base = {"SSL_CERT_FILE": str(ca), "NO_PROXY": ""}
    dead = proxies.free_port()
    cases = [
        ({"HTTPS_PROXY": f"http://{USER}:wrong-{PASSWORD}@127.0.0.1:{tinyproxy.port}"}, "rejected the credentials",
         "HTTPS_PROXY"),
        ({"HTTPS_PROXY": f"http://127.0.0.1:{tinyproxy.port}"}, "requires credentials", "HTTPS_PROXY"),
        ({"https_proxy": f"socks5://{USER}:wrong-{PASSWORD}@127.0.0.1:{socks.port}"}, "rejected the credentials",
         "https_proxy"),
        ({"ALL_PROXY": f"http://{USER}:{PASSWORD}@127.0.0.1:{dead}"}, "cannot connect to proxy", "ALL_PROXY"),
        ({"HTTPS_PROXY": f"ftp://{USER}:{PASSWORD}@127.0.0.1:{dead}"}, "unsupported proxy scheme", "HTTPS_PROXY"),
    ]
    for i, (env, says, var) in enumerate(cases):
        for flags in (("--json",), ("--debug",)):
            r = _pull(cli, cfg, f"cache{i}", {**base, **env}, *flags)
            out = r.stdout + r.stderr
            assert says in out, (env, out)
            _no_secrets(r.stdout, r.stderr)  # --debug: the traceback and every chained exception too
            if flags == ("--json",):
                assert r.exit_code in (2, 4) and "Traceback" not in r.stderr, (env, r.stderr)
                doc = r.json()
                assert doc["error"] in ("source-unreachable", "all-sources-failed", "bad-proxy"), r.stdout
                assert var in doc["hint"] or var in doc["message"], doc  # the hint names what to fix
            else:
                assert r.exit_code != 0
        assert not Path(f"cache{i}.lock").exists()
