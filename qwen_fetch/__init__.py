"""qwen-fetch: fast, resumable, pinned and verified model downloads.

The Python API (:mod:`qwen_fetch.api`) is imported on first use, so that importing the
package, and ``qwen-fetch --help``, stay cheap::

    import qwen_fetch

    model = qwen_fetch.pull("Qwen/Qwen3-VL-8B-Instruct", frozen=True)
    qwen_fetch.verify("Qwen/Qwen3-VL-8B-Instruct")
    folder = qwen_fetch.path("Qwen/Qwen3-VL-8B-Instruct")   # offline: the verified snapshot folder
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from qwen_fetch.api import PulledModel, VerifiedModel, pull, verify
    from qwen_fetch.snapshot_path import path
    from qwen_fetch.errors import (
        ConfigError,
        ExitCode,
        IntegrityError,
        NotFoundError,
        QFError,
        SmokeError,
        SourceError,
        UsageError,
    )

_LAZY = {
    "pull": "qwen_fetch.api", "verify": "qwen_fetch.api", "path": "qwen_fetch.snapshot_path",
    "PulledModel": "qwen_fetch.api", "VerifiedModel": "qwen_fetch.api",
    "QFError": "qwen_fetch.errors", "UsageError": "qwen_fetch.errors", "ConfigError": "qwen_fetch.errors",
    "IntegrityError": "qwen_fetch.errors", "SourceError": "qwen_fetch.errors",
    "NotFoundError": "qwen_fetch.errors", "SmokeError": "qwen_fetch.errors", "ExitCode": "qwen_fetch.errors",
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


class _Package(types.ModuleType):
    """``qwen_fetch.pull`` and ``qwen_fetch.verify`` are the API functions, although
    ``qwen_fetch/pull.py`` and ``qwen_fetch/verify.py`` are modules too.

    Importing a submodule binds it on its package (``qwen_fetch.pull = <module>``), which
    would shadow the function as soon as anything imported the module.  The binding is
    dropped here (the module stays in ``sys.modules``, so ``from qwen_fetch.pull import
    Puller`` works), and the name falls through to :func:`__getattr__`.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _LAZY:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
