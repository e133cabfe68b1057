"""One error type for everything the user sees, with named exit codes.

Every failure that reaches the CLI is a :class:`QFError`: a stable kebab-case
reference (one of :data:`REFERENCES`, the ``error`` field of ``--json``), a
one-line message, optional context lines and a hint that says how to fix it.
The CLI prints it without a traceback (unless ``--debug``) and exits with the
error's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (README, ``--help``)."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2  # usage or configuration error
    INTEGRITY = 3  # hash/size/commit mismatch, not allowlisted, missing pin with --frozen
    SOURCE = 4  # source unreachable, repo or revision not found, disk full while fetching
    SMOKE = 5  # smoke-load failure
    INTERRUPTED = 130  # Ctrl-C / SIGTERM: partial downloads are kept and resume on the next run


EXIT_CODE_HELP = (
    "Exit codes: 0 success; 1 unexpected error; 2 usage or configuration error; "
    "3 integrity failure (hash, size or commit mismatch, file not allowlisted, "
    "missing pin with --frozen); 4 source unreachable, repo or revision not found; "
    "5 smoke-load failure; 130 interrupted (partial downloads resume on the next run)."
)


@dataclass(frozen=True)
class Reference:
    """One kind of failure: its stable name, the exit code it ends a command with, what it means."""

    name: str
    exit_code: ExitCode
    meaning: str

    def __str__(self) -> str:
        return self.name


class Ref:
    """Every error reference, one per kind of failure.

    Raise sites pass one of these (``SourceError(..., reference=Ref.ACCESS_DENIED)``); the
    README's reference table is checked against this one, so a new reference is added here
    first.  A reference's exit code is that of the error class raised with it.
    """

    UNEXPECTED_ERROR = Reference("unexpected-error", ExitCode.UNEXPECTED,
                        "a bug: rerun with --debug and report the traceback")

    USAGE_ERROR = Reference("usage-error", ExitCode.USAGE, "a bad option or combination of options")
    CONFIG_ERROR = Reference("config-error", ExitCode.USAGE, "mirrors.yaml, a YAML file or an environment setting is malformed")
    BAD_LOCKFILE = Reference("bad-lockfile", ExitCode.USAGE, "the lockfile is malformed (file and line named)")
    BAD_PROXY = Reference("bad-proxy", ExitCode.USAGE, "a proxy URL (environment or proxy:) cannot be used")
    BAD_CA_BUNDLE = Reference("bad-ca-bundle", ExitCode.USAGE,
                        "the CA certificates named by SSL_CERT_FILE / SSL_CERT_DIR cannot be loaded")
    BAD_TOKEN = Reference("bad-token", ExitCode.USAGE, "a token variable holds characters an HTTP header cannot carry")
    NO_CACHE = Reference("no-cache", ExitCode.USAGE, "the cache folder to read does not exist")
    REF_CONFLICT = Reference("ref-conflict", ExitCode.USAGE, "a revision name clashes with a ref already in the cache")

    INTEGRITY_ERROR = Reference("integrity-error", ExitCode.INTEGRITY,
                        "bytes, sizes or commits do not match what is expected")
    HASH_MISMATCH = Reference("hash-mismatch", ExitCode.INTEGRITY,
                        "a file did not match its pinned sha256 on any source")
    COMMIT_MISMATCH = Reference("commit-mismatch", ExitCode.INTEGRITY,
                        "the pinned source resolved the revision to another commit than the pin")
    NOT_ALLOWLISTED = Reference("not-allowlisted", ExitCode.INTEGRITY,
                        "a source lists files or digests the lock does not pin")
    NO_TRUSTED_LISTING = Reference("no-trusted-listing", ExitCode.INTEGRITY,
                        "every source's listing was refused as broken or hostile")
    BAD_LISTING = Reference("bad-listing", ExitCode.INTEGRITY, "a source's file listing is malformed or hostile")
    DIGEST_SIZE_CONFLICT = Reference("digest-size-conflict", ExitCode.INTEGRITY,
                        "a listing gives one sha256 two different sizes")
    UNSAFE_PATH = Reference("unsafe-path", ExitCode.INTEGRITY,
                        "a listed path would escape its folder or is not a plain relative path")
    UNSAFE_CACHE_ENTRY = Reference("unsafe-cache-entry", ExitCode.INTEGRITY,
                        "a cache entry is a link or file qwen-fetch did not make; nothing is written through it")
    MISSING_PIN = Reference("missing-pin", ExitCode.INTEGRITY,
                        "the model has no pin in the lockfile (and --frozen forbids adding one)")
    REVISION_NOT_PINNED = Reference("revision-not-pinned", ExitCode.INTEGRITY,
                        "the --revision asked for is not the one the lockfile pins")
    NOT_CACHED = Reference("not-cached", ExitCode.INTEGRITY, "the pinned revision is not in the cache")
    NOT_IN_CACHE = Reference("not-in-cache", ExitCode.INTEGRITY, "path: the pinned snapshot is not in the cache")
    NOT_VERIFIED = Reference("not-verified", ExitCode.INTEGRITY,
                        "path: the cached snapshot is incomplete or does not match the lock")
    VERIFY_FAILED = Reference("verify-failed", ExitCode.INTEGRITY, "cached files do not match the lock")
    SNAPSHOT_VANISHED = Reference("snapshot-vanished", ExitCode.INTEGRITY,
                        "a snapshot changed while it was being linked")
    BLOB_VANISHED = Reference("blob-vanished", ExitCode.INTEGRITY, "a verified blob disappeared before it was linked")
    BAD_STORE = Reference("bad-store", ExitCode.INTEGRITY, "a private store's manifest or key is not what it claims to be")
    UPLOAD_MISMATCH = Reference("upload-mismatch", ExitCode.INTEGRITY,
                        "sync: a blob did not verify after upload (no manifest or ref written)")

    SOURCE_ERROR = Reference("source-error", ExitCode.SOURCE, "a source failed")
    NOT_FOUND = Reference("not-found", ExitCode.SOURCE, "the repo, revision or file does not exist on the source")
    SOURCE_UNREACHABLE = Reference("source-unreachable", ExitCode.SOURCE,
                        "a source cannot be reached (DNS, connection, TLS, proxy)")
    SOURCE_TOO_SLOW = Reference("source-too-slow", ExitCode.SOURCE, "a source did not answer within its deadline")
    SOURCE_HTTP_ERROR = Reference("source-http-error", ExitCode.SOURCE, "a source answered with an HTTP error")
    SOURCE_REFUSED = Reference("source-refused", ExitCode.SOURCE,
                        "a ModelScope source refused the request in its answer")
    ACCESS_DENIED = Reference("access-denied", ExitCode.SOURCE,
                        "a source refused access (gated or private repo, missing or wrong token)")
    ALL_SOURCES_FAILED = Reference("all-sources-failed", ExitCode.SOURCE,
                        "no configured source could be reached or resolve the model")
    FETCH_FAILED = Reference("fetch-failed", ExitCode.SOURCE,
                        "a file could not be fetched from any source (retries exhausted)")
    STORE_ERROR = Reference("store-error", ExitCode.SOURCE, "a private store (dir or s3) operation failed")
    STORE_READBACK_MISMATCH = Reference("store-readback-mismatch", ExitCode.SOURCE,
                        "sync: a manifest read back from the store differs from what was written")
    OFFLINE = Reference("offline", ExitCode.SOURCE, "the network is needed, but offline mode forbids it")
    OFFLINE_MISSING = Reference("offline-missing", ExitCode.SOURCE,
                        "offline, and pinned files are missing from the cache")
    DISK_FULL = Reference("disk-full", ExitCode.SOURCE, "the disk filled up while writing (partial downloads are kept)")
    OS_ERROR = Reference("os-error", ExitCode.SOURCE,
                        "the operating system refused a file operation (permissions, space)")

    SMOKE_FAILED = Reference("smoke-failed", ExitCode.SMOKE, "the smoke-load failed")
    SMOKE_EXTRA_MISSING = Reference("smoke-extra-missing", ExitCode.SMOKE,
                        "--smoke require, but torch/transformers (the [smoke] extra) are missing")
    NO_GPU = Reference("no-gpu", ExitCode.SMOKE, "a CUDA device was asked for and none is visible")
    NO_CONFIG = Reference("no-config", ExitCode.SMOKE, "the model folder has no config.json")
    BAD_CONFIG = Reference("bad-config", ExitCode.SMOKE, "the model's config.json is unreadable or not a JSON object")
    NO_WEIGHTS = Reference("no-weights", ExitCode.SMOKE, "the model folder has no *.safetensors file")
    PICKLE_ONLY_CHECKPOINT = Reference("pickle-only-checkpoint", ExitCode.SMOKE,
                        "the only weights are pickle files, which can run code: not loaded")
    REMOTE_CODE_NOT_PINNED = Reference("remote-code-not-pinned", ExitCode.SMOKE,
                        "--trust-remote-code, but the model's code files are not all pinned")
    TOKENIZER_FAILED = Reference("tokenizer-failed", ExitCode.SMOKE, "the tokenizer could not be loaded")
    INPUTS_FAILED = Reference("inputs-failed", ExitCode.SMOKE,
                        "the smoke inputs (prompt, synthetic image) could not be built")
    LOAD_FAILED = Reference("load-failed", ExitCode.SMOKE, "transformers could not load the model")
    OUT_OF_MEMORY = Reference("out-of-memory", ExitCode.SMOKE, "the GPU ran out of memory loading or generating")
    GENERATE_FAILED = Reference("generate-failed", ExitCode.SMOKE, "generation failed or produced no tokens")

    INTERRUPTED = Reference("interrupted", ExitCode.INTERRUPTED,
                        "Ctrl-C or SIGTERM: resume state saved, the same command resumes")
    CANCELLED = Reference("cancelled", ExitCode.INTERRUPTED,
                        "a download was cancelled from within (the API's cancel event)")


REFERENCES: tuple[Reference, ...] = tuple(v for v in vars(Ref).values() if isinstance(v, Reference))


class QFError(Exception):
    """Base of every user-facing error."""

    exit_code: ExitCode = ExitCode.UNEXPECTED
    ref: Reference = Ref.UNEXPECTED_ERROR  # a subclass's default; a raise site may name a more precise one

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        context: list[str] | None = None,
        reference: Reference | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.context = list(context or [])
        if reference is not None:
            self.ref = reference

    @property
    def reference(self) -> str:
        """The stable kebab-case name of this failure (``error`` in ``--json``)."""
        return self.ref.name

    def to_dict(self) -> dict[str, object]:
        return {
            "error": self.reference,
            "message": self.message,
            "hint": self.hint,
            "context": self.context,
            "exit_code": int(self.exit_code),
        }


class UsageError(QFError):
    exit_code = ExitCode.USAGE
    ref = Ref.USAGE_ERROR


class ConfigError(QFError):
    exit_code = ExitCode.USAGE
    ref = Ref.CONFIG_ERROR


class IntegrityError(QFError):
    exit_code = ExitCode.INTEGRITY
    ref = Ref.INTEGRITY_ERROR


class SourceError(QFError):
    exit_code = ExitCode.SOURCE
    ref = Ref.SOURCE_ERROR


class NotFoundError(SourceError):
    ref = Ref.NOT_FOUND


class DiskFullError(SourceError):
    ref = Ref.DISK_FULL


class SmokeError(QFError):
    exit_code = ExitCode.SMOKE
    ref = Ref.SMOKE_FAILED


class Interrupted(QFError):
    """Ctrl-C or SIGTERM: the command stopped cleanly (partial downloads and their state are kept)."""

    exit_code = ExitCode.INTERRUPTED
    ref = Ref.INTERRUPTED
