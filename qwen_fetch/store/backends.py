"""Where a store lives: a directory (an NFS share) or an S3-compatible bucket.

One small interface, :class:`ObjectStore`, with two adapters.  ``sync`` writes
through it; the ``kind: dir`` / ``kind: s3`` sources read through it and hand
the download engine a URL plus the route to it (a ``file://`` URL under the
store's folder, or a presigned S3 URL through the source's proxy), so the
engine itself stays HTTP-only.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import httpx

from qwen_fetch.core.digests import digest_matches
from qwen_fetch.core.errors import Ref, SourceError, UsageError
from qwen_fetch.core.proxy import ProxyPolicy
from qwen_fetch.net.location import Route
from qwen_fetch.store.bucket import S3_PART_SIZE, is_md5_etag, s3_etag
from qwen_fetch.store.hasher import hash_file, iter_file

PRESIGN_SECONDS = 12 * 3600  # long enough for a 17.5 GB pull on a slow link


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    sha256: str | None  # what the object's metadata claims (S3); None where the store keeps none
    etag: str | None


class ObjectStore(Protocol):
    url: str  # for messages: the directory or s3://bucket/prefix

    def head(self, key: str) -> ObjectInfo | None: ...
    def put_file(self, key: str, local: Path, *, sha256: str) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def list_prefix(self, prefix: str) -> dict[str, ObjectInfo]:
        """Every object under ``prefix`` (a folder, ending in ``/``): name below it -> size (and ETag)."""
        ...
    def check_blob(self, key: str, local: Path, *, sha256: str, size: int) -> str | None:
        """After an upload: ``None`` if the store holds exactly these bytes, else what is wrong."""
        ...
    def location(self, key: str) -> tuple[str, Route]:
        """A URL for GET + Range of ``key``, and the route to fetch it by."""
        ...
    def close(self) -> None: ...


# ---------------------------------------------------------------------------
# a directory


def dir_root(endpoint: str) -> Path:
    """``/srv/models`` or ``file:///srv/models`` -> an absolute path."""
    if endpoint.startswith("file://"):
        parts = urlsplit(endpoint)
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"{endpoint!r}: only local file:// URLs are supported", hint="mount the share first")
        endpoint = unquote(parts.path)
    p = Path(endpoint).expanduser()
    if not p.is_absolute():
        p = Path(os.path.abspath(p))
    return p


class DirStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def path(self, key: str) -> Path:
        # Keys are built by store.layout from validated ids and hashes; refuse anything else anyway.
        if key.startswith("/") or ".." in key.split("/"):
            raise UsageError(f"refused store key {key!r}", hint="this is a bug")
        return self.root.joinpath(*key.split("/"))

    def head(self, key: str) -> ObjectInfo | None:
        try:
            st = self.path(key).stat()
        except OSError:
            return None
        return ObjectInfo(st.st_size, None, None)

    def _atomic(self, dest: Path, write: Any) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_file(self, key: str, local: Path, *, sha256: str) -> None:
        # copyfile uses copy_file_range/sendfile on Linux; readers never see a half-written blob.
        self._atomic(self.path(key), lambda tmp: shutil.copyfile(local, tmp))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._atomic(self.path(key), lambda tmp: tmp.write_bytes(data))

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list_prefix(self, prefix: str) -> dict[str, ObjectInfo]:
        out: dict[str, ObjectInfo] = {}
        try:
            entries = os.scandir(self.path(prefix.rstrip("/")))
        except (FileNotFoundError, NotADirectoryError):
            return out
        with entries:
            for e in entries:
                if not e.name.startswith(".") and e.is_file(follow_symlinks=False):  # skip our .tmp files
                    out[e.name] = ObjectInfo(e.stat(follow_symlinks=False).st_size, None, None)
        return out

    def check_blob(self, key: str, local: Path, *, sha256: str, size: int) -> str | None:
        h = hash_file(self.path(key))  # read back: on NFS this is what the server stored
        if h.size != size or not digest_matches(sha256, h.sha256):
            return f"read back {h.size} bytes with sha256 {h.sha256}, expected {size} bytes {sha256}"
        return None

    def location(self, key: str) -> tuple[str, Route]:
        return "file://localhost" + quote(str(self.path(key))), Route(folder=str(self.root))

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# an S3-compatible bucket (AWS, MinIO, Ceph RGW, OSS) through boto3


def parse_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise UsageError(f"{url!r} is not an s3://bucket/prefix URL", hint="e.g. s3://models/qwen")
    return parts.netloc, parts.path.strip("/")


class S3Store:
    """Credentials and region come from boto3's usual chain (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``,
    instance roles); ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) points at a non-AWS server."""

    def __init__(self, url: str, endpoint_url: str | None = None, *, part_size: int = S3_PART_SIZE,
                 list_page_size: int = 1000, proxy: ProxyPolicy | None = None,
                 ca_bundle: str | None = None) -> None:
        from qwen_fetch.net.offline import require_network

        require_network(f"the S3 store {url}")
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError:
            raise UsageError("kind: s3 needs boto3", hint="pip install 'qwen-fetch[s3]' (or pip install boto3)") from None
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_s3_url(url)
        self.part_size = part_size
        self.list_page_size = list_page_size  # S3's maximum; smaller only to exercise paging
        endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        cfg = BotoConfig(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"},
                         s3={"addressing_style": "path" if endpoint_url else "auto"},
                         max_pool_connections=32, proxies=_boto_proxies(proxy))
        # boto3 reads HTTPS_PROXY/NO_PROXY and AWS_CA_BUNDLE itself; a source's own settings are passed on.
        self.s3 = boto3.client("s3", endpoint_url=endpoint_url, config=cfg,
                               **({"verify": ca_bundle} if ca_bundle else {}))
        self._proxy, self._ca_bundle = proxy, ca_bundle
        self._http: httpx.Client | None = None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, what: str, exc: Exception) -> SourceError:
        return SourceError(f"{self.url}: {what} failed: {exc}", reference=Ref.STORE_ERROR,
                           hint="check the bucket, AWS credentials (AWS_ACCESS_KEY_ID/AWS_PROFILE) and the endpoint URL")

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            r = self.s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(f"HEAD {key}", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"HEAD {key}", exc) from exc
        return ObjectInfo(int(r["ContentLength"]), (r.get("Metadata") or {}).get("sha256"), r.get("ETag"))

    def put_file(self, key: str, local: Path, *, sha256: str) -> None:
        from boto3.exceptions import Boto3Error
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        tc = TransferConfig(multipart_threshold=self.part_size, multipart_chunksize=self.part_size, max_concurrency=4)
        try:
            self.s3.upload_file(str(local), self.bucket, self._key(key), Config=tc,
                                ExtraArgs={"Metadata": {"sha256": sha256}, "ContentType": "application/octet-stream"})
        except (BotoCoreError, ClientError, Boto3Error) as exc:  # upload_file wraps refusals in S3UploadFailedError
            raise self._fail(f"upload of {key}", exc) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"PUT {key}", exc) from exc

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=self._key(key))
            return bytes(r["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(f"GET {key}", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"GET {key}", exc) from exc

    def list_prefix(self, prefix: str) -> dict[str, ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix)
        out: dict[str, ObjectInfo] = {}
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.list_page_size})
            for page in pages:
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(full):]
                    if name and "/" not in name:
                        out[name] = ObjectInfo(int(obj["Size"]), None, obj.get("ETag"))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"listing {prefix}", exc) from exc
        return out

    def check_blob(self, key: str, local: Path, *, sha256: str, size: int) -> str | None:
        info = self.head(key)
        if info is None:
            return "not found after upload"
        if info.size != size or not digest_matches(sha256, info.sha256):
            return f"stored {info.size} bytes (sha256 metadata {info.sha256}), expected {size} bytes {sha256}"
        if info.etag and is_md5_etag(info.etag):
            want = s3_etag(iter_file(local), size, self.part_size)
            if info.etag.strip('"') != want:
                return f"ETag {info.etag} != {want} computed locally: the server stored other bytes"
            return None
        # An ETag that is not an MD5 (SSE-KMS, some gateways): read the object back and hash it.
        url, route = self.location(key)
        import hashlib

        h = hashlib.sha256()
        with self._reader(route).stream("GET", url) as r:
            for chunk in r.iter_bytes(1 << 20):
                h.update(chunk)
        return None if digest_matches(sha256, h.hexdigest()) else f"read back sha256 {h.hexdigest()}, expected {sha256}"

    def _reader(self, route: Route) -> httpx.Client:
        """sync's own client for reading back what it uploaded, one at a time (a pull reads through its pools)."""
        from qwen_fetch.net.http import make_client

        if self._http is None:
            self._http = make_client(pool_size=1, proxy=route.proxy, ca_bundle=route.ca_bundle)
        return self._http

    def location(self, key: str) -> tuple[str, Route]:
        url = self.s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                                             ExpiresIn=PRESIGN_SECONDS)
        return url, Route(proxy=self._proxy, ca_bundle=self._ca_bundle)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def _boto_proxies(policy: ProxyPolicy | None) -> dict[str, str] | None:
    """botocore's ``proxies`` for a source's ``proxy:`` (None: botocore reads the environment)."""
    if policy is None:
        return None
    proxy = policy.https
    if proxy is None:
        return {}  # proxy: none
    cred = ""
    if proxy.has_credentials:
        cred = quote(proxy.username or "", safe="") + ":" + quote(proxy.password or "", safe="") + "@"
    url = f"http://{cred}{proxy.host}:{proxy.port}"
    return {"http": url, "https": url}


def open_store(endpoint: str, *, kind: str | None = None, s3_endpoint_url: str | None = None,
               proxy: ProxyPolicy | None = None, ca_bundle: str | None = None) -> ObjectStore:
    """A store from ``--to`` / a source's endpoint: ``s3://...`` is S3, anything else a directory.

    ``proxy`` / ``ca_bundle``: the source's ``proxy:`` and ``ca_bundle:`` (S3 only).
    """
    kind = kind or ("s3" if endpoint.startswith("s3://") else "dir")
    if kind == "s3":
        return S3Store(endpoint, s3_endpoint_url, proxy=proxy, ca_bundle=ca_bundle)
    return DirStore(dir_root(endpoint))
