"""Test repositories shaped like the real Qwen3-VL-8B-Instruct, at any scale.

File names and size ratios come from ``reference/qwen3-vl-8b-instruct.json``
(embedded below so the package works without the reference folder).  Shards
are random bytes (streamed to disk, never held in memory); the small files are
synthetic JSON/text of the real sizes' order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.repo import RepoStore

QWEN3_VL_8B = "Qwen/Qwen3-VL-8B-Instruct"
# (path, real size) at commit 0c351dd01ed87e9c1b53cbc748cba10e6187ff3b
REAL_FILES: tuple[tuple[str, int], ...] = (
    ("README.md", 7133),
    ("chat_template.json", 5499),
    ("config.json", 1474),
    ("generation_config.json", 269),
    ("merges.txt", 1671839),
    ("model-00001-of-00004.safetensors", 4902275944),
    ("model-00002-of-00004.safetensors", 4915962496),
    ("model-00003-of-00004.safetensors", 4999831048),
    ("model-00004-of-00004.safetensors", 2716270024),
    ("model.safetensors.index.json", 67759),
    ("preprocessor_config.json", 390),
    ("tokenizer.json", 7032403),
    ("tokenizer_config.json", 10868),
    ("video_preprocessor_config.json", 385),
    ("vocab.json", 2776833),
)
REAL_SHARD_BYTES = sum(s for p, s in REAL_FILES if p.endswith(".safetensors"))


def _random_file(path: Path, size: int, seed: int) -> None:
    """Pseudo-random bytes, fast: a 1 MiB random block re-keyed per MiB (no two MiB equal)."""
    import hashlib

    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20) if seed < 0 else hashlib.shake_256(b"qwen-fetch-%d" % seed).digest(1 << 20)
    with open(path, "wb") as f:
        written = 0
        i = 0
        while written < size:
            n = min(1 << 20, size - written)
            tag = hashlib.sha256(b"%d:%d" % (seed, i)).digest()
            f.write(tag + block[len(tag):n] if n > len(tag) else tag[:n])
            written += n
            i += 1


def build_sharded_files(out_dir: Path, shard_total: int, *, seed: int = 0, small_scale: float = 1.0) -> dict[str, Path]:
    """Write the real repo's files with shards scaled so they add up to ``shard_total`` bytes."""
    out: dict[str, Path] = {}
    for i, (path, real) in enumerate(REAL_FILES):
        dst = out_dir / path
        if path.endswith(".safetensors"):
            _random_file(dst, max(1, int(real * shard_total / REAL_SHARD_BYTES)), seed * 100 + i)
        elif path.endswith(".json"):
            body = {"_comment": f"synthetic stand-in for {path}", "seed": seed}
            text = json.dumps(body)
            size = max(len(text), int(real * small_scale))
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text + " " * (size - len(text)))
        else:
            _random_file(dst, max(1, int(real * small_scale)), seed * 100 + i)
        out[path] = dst
    return out


def add_sharded_repo(store: RepoStore, repo_id: str = QWEN3_VL_8B, *, shard_total: int = 8 << 20, seed: int = 0,
                     revision: str = "main", small_scale: float = 0.01, work: Path | None = None) -> str:
    """Add a commit shaped like Qwen3-VL-8B-Instruct to ``store``; returns the commit."""
    work = work or (store.root / ".work" / f"{repo_id.replace('/', '--')}-{seed}-{shard_total}")
    files = build_sharded_files(work, shard_total, seed=seed, small_scale=small_scale)
    return store.add_commit(repo_id, files, revision=revision)
