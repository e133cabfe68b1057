"""Regenerate the bundled demo model ``qwen_fetch/demo/tiny-qwen3-vl/``.

    .venv/bin/python tools/make_demo_model.py [--check]

A tiny random-weight Qwen3-VL (real architecture and file names, two shards), built
with a fixed seed so reruns with the same transformers version give the same bytes.
``--check`` rebuilds into a temporary folder and exits 1 if the weights differ from
the committed ones (config files may differ only by ``transformers_version``).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "qwen_fetch" / "demo" / "tiny-qwen3-vl"
SEED = 20251122
README = """# tiny-qwen3-vl (qwen-fetch demo model)

A random-weight `Qwen3VLForConditionalGeneration` with tiny dimensions, laid out with the
file names of Qwen/Qwen3-VL-8B-Instruct (two shards instead of four).  It generates noise:
it exists so `qwen-fetch demo` and the tests can pull, verify and smoke-load a real
Qwen3-VL checkpoint without internet.  Regenerate with `python tools/make_demo_model.py`.
"""


def build(dest: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.tiny_model import build_tiny_qwen3_vl

    build_tiny_qwen3_vl(dest, seed=SEED)
    (dest / "README.md").write_text(README)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="verify the committed weights are reproducible")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp))
            shards = sorted(p.name for p in Path(tmp).glob("*.safetensors"))
            _, mismatch, errors = filecmp.cmpfiles(DEMO_DIR, tmp, shards, shallow=False)
            if mismatch or errors:
                print(f"demo weights differ from a fresh build: {mismatch + errors}", file=sys.stderr)
                return 1
        print("demo model is reproducible")
        return 0
    tmp_dest = DEMO_DIR.with_name(DEMO_DIR.name + ".tmp")
    shutil.rmtree(tmp_dest, ignore_errors=True)
    build(tmp_dest)
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    tmp_dest.rename(DEMO_DIR)
    from qwen_fetch.core.units import format_bytes

    total = sum(p.stat().st_size for p in DEMO_DIR.iterdir())
    print(f"wrote {DEMO_DIR.relative_to(ROOT)} ({format_bytes(total)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
