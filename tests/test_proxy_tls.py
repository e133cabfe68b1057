"""TLS trust behind an intercepting proxy (mitmproxy with its own CA), and the trust settings themselves.

Through mitmproxy a pull fails with a clear TLS error whose hint names
``ca_bundle:`` and ``SSL_CERT_FILE`` (nothing written); it succeeds once either
points at mitmproxy's CA, and mitmproxy's flow log shows it relayed the bytes.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from qwen_fetch.core.errors import ConfigError
from qwen_fetch.net.http import tls_context
from qwen_fetch.store.hfcache import RepoCache
from tests.conftest import write_mirrors
from tests.support import proxies
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer


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
def mitm(tls_hub, tmp_path: Path) -> Iterator[proxies.Proxy]:  # type: ignore[no-untyped-def]
    why = proxies.missing("mitmproxy")
    if why:
        pytest.skip(why)
    _hub, hub_ca = tls_hub
    with proxies.mitmdump(tmp_path / "mitm", upstream_ca=hub_ca) as p:
        yield p


def _pull(cli, cfg: Path, cache: str, env: dict[str, str]):  # type: ignore[no-untyped-def]
    return cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", cache, "--no-smoke", "--json",
               "--lock", f"{cache}.lock", env=env)


def test_intercepting_proxy_needs_its_ca(cli, tls_hub, mitm, store, sharded_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub, hub_ca = tls_hub
    env = {"HTTPS_PROXY": mitm.url, "NO_PROXY": ""}
    cfg = write_mirrors(tmp_path / "mirrors.yaml", ("tls", hub.url))
    # Trusting the hub's own CA is not enough: the proxy presents certificates from its CA.
    r = _pull(cli, cfg, "cache-refused", {**env, "SSL_CERT_FILE": str(hub_ca)})
    assert r.exit_code == 4, r.stderr
    doc = r.json()
    assert doc["error"] == "source-unreachable" and "certificate" in doc["message"], doc
    assert f"via proxy http://127.0.0.1:{mitm.port}" in doc["message"], doc
    assert "ca_bundle" in doc["hint"] and "SSL_CERT_FILE" in doc["hint"], doc
    assert not Path("cache-refused").exists() or not any(Path("cache-refused").rglob("*.safetensors"))
    assert not [e for e in hub.log if "/resolve/" in e["path"]]

    mitm_ca = proxies.mitm_ca(mitm)
    assert mitm_ca.is_file()
    r = _pull(cli, cfg, "cache-env", {**env, "SSL_CERT_FILE": str(mitm_ca)})
    assert r.exit_code == 0, r.stderr

    cfg_ca = write_mirrors(tmp_path / "ca.yaml", ("tls", hub.url))
    cfg_ca.write_text(cfg_ca.read_text() + f"    ca_bundle: {mitm_ca}\n")
    r = _pull(cli, cfg_ca, "cache-key", env)  # the source's ca_bundle: alone, no SSL_CERT_FILE
    assert r.exit_code == 0, r.stderr
    for cache in ("cache-env", "cache-key"):
        snap = RepoCache(Path(cache), QWEN3_VL_8B).snapshot_dir(sharded_repo)
        for f in store.files(QWEN3_VL_8B, sharded_repo):
            assert (snap / f.path).read_bytes() == f.disk.read_bytes()
    log = mitm.log_text()
    assert "does not trust the proxy's certificate" in log  # the refused run stopped at the handshake
    relayed = [line for line in log.splitlines() if f"GET https://localhost:{hub.port}/Qwen/" in line]
    assert len(relayed) >= 2 * len(store.files(QWEN3_VL_8B, sharded_repo)), log[-3000:]


def test_tls_context_uses_the_os_trust_store_unless_a_bundle_is_named(tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                      monkeypatch) -> None:
    import truststore

    assert isinstance(tls_context(), truststore.SSLContext)
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.setenv(var, str(ca))
        ctx = tls_context()
        assert not isinstance(ctx, truststore.SSLContext)
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert len(ctx.get_ca_certs()) == 1  # the bundle replaces the defaults, as for curl and requests
        monkeypatch.delenv(var)
    assert len(tls_context(str(ca)).get_ca_certs()) == 1


def test_unusable_ca_bundles_are_config_errors(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="SSL_CERT_FILE") as info:
        tls_context()
    assert "no such file" in info.value.message
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="not a PEM"):
        tls_context(str(junk))


def test_missing_ssl_cert_file_is_exit_2_not_a_traceback(cli, mirrors, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", "--json",
            env={"SSL_CERT_FILE": str(tmp_path / "nope.pem")})
    assert r.exit_code == 2, r.stderr
    assert r.json()["error"] == "bad-ca-bundle" and "Traceback" not in r.stderr
