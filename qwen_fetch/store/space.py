"""Whether the files a pull still has to write fit on the disk: checked once, before anything starts.

The engine re-checks as each file starts (:mod:`qwen_fetch.net.engine`), since other
writers share the disk; this is the early refusal that names the whole amount.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from qwen_fetch.core.errors import DiskFullError
from qwen_fetch.core.units import format_bytes


def bytes_still_needed(pending: Iterable[tuple[Path, int]]) -> int:
    """Bytes to write for ``(partial file, size)`` pairs: a partial's allocated blocks count as written
    (a partial may have holes, so its length says nothing)."""
    need = 0
    for partial, size in pending:
        try:
            have = min(os.stat(partial).st_blocks * 512, size)
        except OSError:
            have = 0
        need += size - have
    return need


def require_space(where: Path, need: int) -> None:
    """Refuse to start when ``need`` bytes cannot fit in the file system of ``where``."""
    free = shutil.disk_usage(where).free
    if need > free:
        raise DiskFullError(f"not enough disk space: {format_bytes(need)} still needed, {format_bytes(free)} free",
                            hint="free some space (qwen-fetch gc) or point the cache elsewhere (HF_HUB_CACHE); "
                                 "partial downloads are kept and resume",
                            context=[f"cache: {where}"])
