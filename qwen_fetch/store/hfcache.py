"""The Hugging Face cache layout, as huggingface_hub and transformers read it.

    <cache>/models--{org}--{name}/blobs/{etag}
    <cache>/models--{org}--{name}/snapshots/{commit}/{path}  -> ../../blobs/{etag}
    <cache>/models--{org}--{name}/refs/{revision}             (text: the commit)
    <cache>/.locks/models--{org}--{name}/{etag}.lock         (shared with huggingface_hub)

Every write here is atomic (write aside, then rename), so a crash leaves either
the old state or the new one.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from qwen_fetch.core.errors import Ref, UsageError
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.core.revisions import is_commit_id, revision_problem
from qwen_fetch.core.verify import INCOMPLETE  # noqa: F401  (the cache's spelling; re-exported)
from qwen_fetch.store.safefs import atomic_write_text, is_regular, join_safe, make_dirs

# huggingface_hub's rules (``validate_repo_id``): [namespace/]name, each 1-96 of [A-Za-z0-9_.-], starting and
# ending with a letter, digit or "_", no "--" or "..", not ending in ".git".  "--" matters most: the cache
# folder is ``models--`` + the id with "/" as "--", so an id holding "--" could not be read back from it.
_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID_RE = re.compile(rf"^(?:{_NAME}/)?{_NAME}$")


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a model id the cache can hold and map back to itself; else a usage error."""
    if (not isinstance(repo_id, str) or not _REPO_ID_RE.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id
            or repo_id.endswith(".git")):
        raise UsageError(f"invalid model id {repo_id!r}",
                         hint="use ORG/NAME: letters, digits, '-', '_' and '.', no '--' or '..', "
                              "e.g. Qwen/Qwen3-VL-8B-Instruct")
    return repo_id


def repo_folder_name(repo_id: str) -> str:
    return "models--" + "--".join(check_repo_id(repo_id).split("/"))


def repo_id_from_folder(name: str) -> str | None:
    """The model id a ``models--...`` folder holds, or None when the name maps to no valid id."""
    if not name.startswith("models--"):
        return None
    rid = "/".join(name[len("models--"):].split("--"))
    try:
        check_repo_id(rid)
    except UsageError:
        return None
    return rid


def atomic_symlink(target: str, link: Path, tmp_dir: Path | None = None) -> None:
    """Create the link aside then rename it into place (the link text is relative to its final home)."""
    tmp = (tmp_dir or link.parent) / f".{link.name}.{secrets.token_hex(4)}.tmp"
    os.symlink(target, tmp)
    os.replace(tmp, link)


@dataclass(frozen=True)
class RepoCache:
    cache_dir: Path
    repo_id: str

    @property
    def repo_dir(self) -> Path:
        return self.cache_dir / repo_folder_name(self.repo_id)

    @property
    def blobs_dir(self) -> Path:
        return self.repo_dir / "blobs"

    @property
    def snapshots_dir(self) -> Path:
        return self.repo_dir / "snapshots"

    @property
    def refs_dir(self) -> Path:
        return self.repo_dir / "refs"

    @property
    def locks_dir(self) -> Path:
        return self.cache_dir / ".locks" / repo_folder_name(self.repo_id)

    def blob_path(self, blob_name: str) -> Path:
        return self.blobs_dir / blob_name

    def partial_path(self, blob_name: str) -> Path:
        return self.blobs_dir / (blob_name + INCOMPLETE)

    def lock_path(self, blob_name: str) -> Path:
        return self.locks_dir / (blob_name + ".lock")

    def snapshot_lock_path(self, commit: str) -> Path:
        """Held by ``pull`` while it links a snapshot and writes its ref; ``gc`` skips a snapshot it can't lock."""
        return self.locks_dir / f"snapshot-{commit}.lock"

    def snapshot_dir(self, commit: str) -> Path:
        return self.snapshots_dir / commit

    def snapshot_file(self, commit: str, path: SafeRelPath) -> Path:
        return join_safe(self.snapshot_dir(commit), path)

    def ensure_dirs(self) -> None:
        for d in (self.blobs_dir, self.snapshots_dir, self.refs_dir, self.locks_dir):
            make_dirs(self.cache_dir, d)

    def link_snapshot(self, commit: str, path: SafeRelPath, blob_name: str) -> Path:
        """Point ``snapshots/<commit>/<path>`` at ``blobs/<blob_name>`` (relative link)."""
        snap = self.snapshot_dir(commit)
        make_dirs(self.cache_dir, snap)  # a planted symlinked snapshots/<commit> would take our links elsewhere
        link = join_safe(snap, path)
        make_dirs(self.cache_dir, link.parent)
        rel = os.path.relpath(self.blob_path(blob_name), link.parent)
        if link.is_symlink() and os.readlink(link) == rel:
            return link
        # The temporary link lives in .locks/, never in the snapshot: a SIGKILL between the two
        # steps must not leave an extra file in a snapshot (verify and scan_cache_dir would see it).
        make_dirs(self.cache_dir, self.locks_dir)
        atomic_symlink(rel, link, tmp_dir=self.locks_dir)
        return link

    def write_ref(self, revision: str, commit: str) -> None:
        if revision == commit:
            return
        problem = revision_problem(revision)
        if problem is not None or not is_commit_id(commit):  # callers check both before any request
            raise UsageError(f"refusing to write ref {revision!r} -> {commit!r}: {problem or 'not a commit id'}",
                             hint="name a branch or tag by git's rules (git check-ref-format)")
        conflict = self.ref_conflict(revision)
        if conflict is not None:
            raise conflict
        ref = self.refs_dir / revision
        make_dirs(self.cache_dir, ref.parent)
        if is_regular(ref) and ref.read_text(encoding="utf-8").strip() == commit:
            return
        make_dirs(self.cache_dir, self.locks_dir)
        atomic_write_text(ref, commit, tmp_dir=self.locks_dir)

    def read_ref(self, revision: str) -> str | None:
        """The commit ``refs/<revision>`` names; None when absent or when it holds no commit id
        (a ref's text becomes a snapshot folder name, so ``..`` or a path must never come back)."""
        if revision_problem(revision) is not None:
            return None
        ref = self.refs_dir / revision
        try:
            commit = ref.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return commit if is_commit_id(commit) else None

    def ref_conflict(self, revision: str) -> UsageError | None:
        """The error to raise when ``refs/<revision>`` cannot be written next to the refs already here.

        Refs are files named by the revision, so ``a`` and ``a/b`` cannot both exist (git refuses
        such a pair as well, but a branch may be deleted and a longer one created later, and
        Hugging Face's ``refs/pr/N`` shares the folder with branch names).
        """
        parts = revision.split("/")
        for i in range(1, len(parts)):
            prefix = self.refs_dir.joinpath(*parts[:i])
            if os.path.lexists(prefix) and not prefix.is_dir():
                other = "/".join(parts[:i])
                return UsageError(
                    f"cannot record revision {revision!r} in the cache: ref {other!r} is a file where "
                    f"{revision!r} needs a folder", reference=Ref.REF_CONFLICT,
                    hint=f"if {other!r} is no longer used, delete {prefix} (a ref only: no snapshot is "
                         "removed) and rerun; or pull into a plain folder with --local-dir")
        target = self.refs_dir.joinpath(*parts)
        if target.is_dir() and not target.is_symlink():
            inner = sorted(p.relative_to(self.refs_dir).as_posix() for p in target.rglob("*") if not p.is_dir())
            shown = ", ".join(repr(n) for n in inner[:3]) or "an empty folder"
            return UsageError(
                f"cannot record revision {revision!r} in the cache: refs/{revision} is a folder ({shown})",
                reference=Ref.REF_CONFLICT,
                hint=f"if those refs are no longer used, delete {target} (refs only: no snapshot is "
                     "removed) and rerun; or pull into a plain folder with --local-dir")
        return None

    def refs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if not self.refs_dir.is_dir():
            return out
        for p in sorted(self.refs_dir.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                name = p.relative_to(self.refs_dir).as_posix()
                commit = self.read_ref(name)
                if commit:
                    out[name] = commit
        return out

    def snapshot_commits(self) -> list[str]:
        if not self.snapshots_dir.is_dir():
            return []
        return sorted(p.name for p in self.snapshots_dir.iterdir() if p.is_dir())
