"""One error type for everything the user sees, with named exit codes.

Every failure that reaches the CLI is a :class:`QFError`: a stable kebab-case
reference, a one-line message, optional context lines and a hint that says how
to fix it.  The CLI prints it without a traceback (unless ``--debug``) and exits
with the error's code.
"""

from __future__ import annotations

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


class QFError(Exception):
    """Base of every user-facing error."""

    exit_code: ExitCode = ExitCode.UNEXPECTED
    reference: str = "unexpected-error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        context: list[str] | None = None,
        reference: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.context = list(context or [])
        if reference is not None:
            self.reference = reference

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
    reference = "usage-error"


class ConfigError(QFError):
    exit_code = ExitCode.USAGE
    reference = "config-error"


class IntegrityError(QFError):
    exit_code = ExitCode.INTEGRITY
    reference = "integrity-error"


class SourceError(QFError):
    exit_code = ExitCode.SOURCE
    reference = "source-error"


class NotFoundError(SourceError):
    reference = "not-found"


class DiskFullError(SourceError):
    reference = "disk-full"


class SmokeError(QFError):
    exit_code = ExitCode.SMOKE
    reference = "smoke-failed"


class Interrupted(QFError):
    """Ctrl-C or SIGTERM: the command stopped cleanly (partial downloads and their state are kept)."""

    exit_code = ExitCode.INTERRUPTED
    reference = "interrupted"
