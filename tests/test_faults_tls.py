"""Fault campaign, TLS: a loopback HTTPS mirror whose certificate comes from a private CA (trustme).

Refused by default (exit 4, the error says the certificate failed and the hint
names SSL_CERT_FILE), nothing written; accepted once SSL_CERT_FILE points at
the CA, with the same bytes as any other pull.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from qwen_fetch.store.hfcache import RepoCache
from tests.conftest import write_mirrors
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer


@pytest.fixture
def tls_hub(store, sharded_repo, tmp_path: Path) -> Iterator[tuple[HubServer, Path]]:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with HubServer(store, ssl_context=ctx) as hub:
        yield hub, ca_file


def _pull(cli, cfg: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "cache", "--no-smoke", "--json", env=env)


def test_self_signed_mirror_is_refused_by_default(cli, tls_hub, sharded_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub, _ca = tls_hub
    assert hub.url.startswith("https://")
    cfg = write_mirrors(tmp_path / "mirrors.yaml", ("tls", hub.url))
    r = _pull(cli, cfg)
    assert r.exit_code == 4, r.stdout
    doc = r.json()  # --json: the error is the one JSON document, stderr stays empty
    assert "certificate" in doc["message"] and "SSL_CERT_FILE" in doc["hint"], doc
    assert r.stderr == ""
    assert r.json()["error"] == "source-unreachable"
    assert not RepoCache(Path("cache"), QWEN3_VL_8B).snapshot_dir(sharded_repo).exists()
    assert not Path("qwen-fetch.lock").exists()
    assert not [e for e in hub.log if "/resolve/" in e["path"]]  # no request got through the handshake


def test_self_signed_mirror_is_accepted_with_its_ca(cli, tls_hub, store, sharded_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub, ca = tls_hub
    cfg = write_mirrors(tmp_path / "mirrors.yaml", ("tls", hub.url))
    r = _pull(cli, cfg, env={"SSL_CERT_FILE": str(ca)})
    assert r.exit_code == 0, r.stderr
    snap = RepoCache(Path("cache"), QWEN3_VL_8B).snapshot_dir(sharded_repo)
    for f in store.files(QWEN3_VL_8B, sharded_repo):
        assert (snap / f.path).read_bytes() == f.disk.read_bytes()
    assert cli("verify", QWEN3_VL_8B, "--cache-dir", "cache").exit_code == 0
    # the CA is trusted for this run only: without it the same mirror is refused again
    assert cli("lock", QWEN3_VL_8B, "--config", str(cfg), "--update").exit_code == 4


def test_wrong_ca_is_still_refused(cli, tls_hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub, _ca = tls_hub
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    cfg = write_mirrors(tmp_path / "mirrors.yaml", ("tls", hub.url))
    r = _pull(cli, cfg, env={"SSL_CERT_FILE": str(other)})
    assert r.exit_code == 4 and "certificate" in r.json()["message"]
