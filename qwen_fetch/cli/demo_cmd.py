"""``qwen-fetch demo``: the whole pipeline on an embedded default, no internet needed.

The bundled tiny Qwen3-VL model is placed in a scratch Hugging Face cache and
published by ``qwen-fetch serve`` on loopback (the HF protocol, as a fleet's
origin publishes its cache); the demo then runs the real CLI against it as a
``kind: hf`` source: ``pull`` (resolve, pin, download, verify, lay out the HF
cache, smoke-load when possible), a second ``pull`` that transfers nothing, and
``verify``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from qwen_fetch.cli.common import DebugOpt, console, run_command, styled

DEMO_MODEL = "qwen-fetch-demo/Qwen3-VL-tiny"


def bundled_model_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("qwen_fetch").joinpath("demo/tiny-qwen3-vl")))


def smoke_extra_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("transformers") is not None and find_spec("torch") is not None


def closing_lines(root: Path, *, kept: bool) -> list[str]:
    """What the demo left behind: copy-paste commands for a kept folder, or how to keep it."""
    if not kept:
        return [f"Its work folder {root} (cache, lockfile, mirrors.yaml) has been removed.",
                "To keep it and get commands that use it: qwen-fetch demo --workdir ./qwen-fetch-demo"]
    cache, lock = shlex.quote(str(root / "cache")), shlex.quote(str(root / "qwen-fetch.lock"))
    load = f'from huggingface_hub import snapshot_download; print(snapshot_download("{DEMO_MODEL}"))'
    return [f"The model is in {root / 'cache'} (Hugging Face cache layout), pinned in {root / 'qwen-fetch.lock'}.",
            "Read it offline as any Hugging Face tool does (prints the snapshot folder):",
            f"  HF_HUB_CACHE={cache} HF_HUB_OFFLINE=1 python -c {shlex.quote(load)}",
            "Check it against the lockfile again:",
            f"  qwen-fetch verify {DEMO_MODEL} --cache-dir {cache} --lock {lock}"]


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        workdir: Annotated[Path | None, typer.Option("--workdir", help="Put the cache, lockfile and mirrors.yaml here and keep them (default: a temporary folder, removed at the end).")] = None,
        keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary folder afterwards.")] = False,
        debug: DebugOpt = False,
    ) -> None:
        """Pull, pin and verify a bundled tiny Qwen3-VL from `qwen-fetch serve` on loopback (no internet)."""
        def body() -> None:
            from qwen_fetch.core.errors import QFError
            from qwen_fetch.ops.demo import seed_cache
            from qwen_fetch.serve.server import ServeServer

            con = console()
            src = bundled_model_dir()
            files = {p.relative_to(src).as_posix(): p for p in sorted(src.rglob("*")) if p.is_file()}
            if not files:
                raise QFError(f"the bundled demo model is missing from {src}", hint="reinstall qwen-fetch")
            tmp = tempfile.TemporaryDirectory(prefix="qwen-fetch-demo-")
            root = workdir or Path(tmp.name)
            root.mkdir(parents=True, exist_ok=True)
            origin = root / "origin-cache"  # what `qwen-fetch serve --cache-dir` publishes
            seed_cache(origin, DEMO_MODEL, files)
            failed = 0
            with ServeServer(origin, host="127.0.0.1", port=0) as hub:
                mirrors = root / "mirrors.yaml"
                mirrors.write_text(f"sources:\n  - name: demo-mirror\n    kind: hf\n    endpoint: {hub.url}\n    priority: 10\n")
                cache, lock = root / "cache", root / "qwen-fetch.lock"
                common = ["--config", str(mirrors), "--lock", str(lock)]
                steps = [
                    ("pull: resolve, pin, download with many connections, verify every byte, lay out the HF cache",
                     ["pull", DEMO_MODEL, "--cache-dir", str(cache), *common, "--device", "cpu"]),
                    ("pull again: pinned and cached, nothing is transferred",
                     ["pull", DEMO_MODEL, "--cache-dir", str(cache), *common, "--frozen", "--no-smoke"]),
                    ("verify: offline re-hash against the pins", ["verify", DEMO_MODEL, "--cache-dir", str(cache),
                                                                   "--lock", str(lock)]),
                ]
                con.print(styled("qwen-fetch demo", "bold"), f": qwen-fetch serve on {hub.url} publishing {DEMO_MODEL} "
                          f"({len(files)} files, {sum(p.stat().st_size for p in files.values())} bytes)", sep="")
                env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", HF_HUB_OFFLINE="0",
                           # transformers' own progress bar and advisories would interleave with the steps.
                           HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
                for title, args in steps:
                    con.print(styled(f"\n== {title}", "bold cyan"), f"\n$ qwen-fetch {shlex.join(args)}", sep="")
                    served_before = hub.stats.file_bytes
                    proc = subprocess.run([sys.executable, "-m", "qwen_fetch", *args], env=env)
                    if proc.returncode != 0:
                        failed = proc.returncode
                        break
                    if title.startswith("pull:") and smoke_extra_installed():
                        con.print("(the bundled model has random weights: a smoke-load proves that it loads and "
                                  "generates, and its output is noise by design)")
                    if title.startswith("pull again"):
                        con.print(f"(file bytes the mirror served for this step: {hub.stats.file_bytes - served_before})")
            kept = keep or workdir is not None
            if failed == 0:
                con.print(styled(f"\n== the lockfile ({lock})", "bold cyan"))
                con.print("\n".join(lock.read_text().splitlines()[:14]) + "\n...", markup=False)
                con.print(styled("\ndemo passed", "green"))
                for line in closing_lines(root.absolute(), kept=kept):
                    con.print(line, markup=False)
            if not kept:
                tmp.cleanup()
            if failed:
                raise typer.Exit(failed)

        run_command(body, json_mode=False, debug=debug)
