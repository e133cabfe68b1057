"""qwen-fetch: fast, resumable, pinned and verified model downloads.

The Python API (:mod:`qwen_fetch.api`) is imported on first use, so that importing the
package, and ``qwen-fetch --help``, stay cheap::

    import qwen_fetch

    model = qwen_fetch.pull("Qwen/Qwen3-VL-8B-Instruct", frozen=True)
    qwen_fetch.verify("Qwen/Qwen3-VL-8B-Instruct")
    folder = qwen_fetch.path("Qwen/Qwen3-VL-8B-Instruct")   # offline: the verified snapshot folder
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from qwen_fetch.api import PulledModel, VerifiedModel, pull, verify
    from qwen_fetch.core.errors import (
        ConfigError,
        ExitCode,
        IntegrityError,
        NotFoundError,
        QFError,
        SmokeError,
        SourceError,
        UsageError,
    )
    from qwen_fetch.ops.snapshot import path

_LAZY = {
    "pull": "qwen_fetch.api", "verify": "qwen_fetch.api", "path": "qwen_fetch.ops.snapshot",
    "PulledModel": "qwen_fetch.api", "VerifiedModel": "qwen_fetch.api",
    "QFError": "qwen_fetch.core.errors", "UsageError": "qwen_fetch.core.errors", "ConfigError": "qwen_fetch.core.errors",
    "IntegrityError": "qwen_fetch.core.errors", "SourceError": "qwen_fetch.core.errors",
    "NotFoundError": "qwen_fetch.core.errors", "SmokeError": "qwen_fetch.core.errors", "ExitCode": "qwen_fetch.core.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qwen_fetch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
