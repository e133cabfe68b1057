"""The smoke-load that ends a pull (on the GPU when there is one)."""

from __future__ import annotations

from typing import Any

from qwen_fetch.core.errors import SmokeError


def after_pull(result: Any, *, mode: str, device: str, json_mode: bool) -> dict[str, Any] | None:
    """Run the smoke-load after a successful pull when possible.

    ``auto``: run it when the [smoke] extra and a GPU are present (or ``--device cpu``), else
    say so in one line and carry on.  ``require``: without them, exit 5.
    """
    try:
        from qwen_fetch.smoke import check as smoke
    except ImportError:
        smoke = None  # type: ignore[assignment]
    if smoke is None:
        available, reason = False, "the smoke module is not available in this build"
    else:
        available, reason = smoke.smoke_available(device=device) if _accepts_device(smoke) else smoke.smoke_available()
        if device == "cpu" and not available and "GPU" in reason:
            available = True
    if not available:
        if mode == "require":
            raise SmokeError(f"cannot smoke-load: {reason}",
                             hint="pip install 'qwen-fetch[smoke]' on a machine with a GPU, or use --smoke auto/off")
        if not json_mode:
            from qwen_fetch.cli.common import console

            console(stderr=True).print(f"smoke-load skipped: {reason}")
        return {"skipped": reason}
    pinned = {f.path for f in result.files}
    quiet_libraries()
    report = smoke.run_smoke(result.target, device=device, pinned_paths=pinned)
    d: dict[str, Any] = report.to_dict()
    if not json_mode:
        from qwen_fetch.cli.common import console

        console(stderr=True).print(f"  smoke-load: {d.get('model_class')} on {d.get('device_name')}: "
                        f"loaded in {d.get('load_seconds', 0):.1f}s, {d.get('tokens_per_second', 0):.1f} tok/s, "
                        f"output {str(d.get('generated_text'))[:60]!r}")
    return d


def _accepts_device(mod: Any) -> bool:
    import inspect

    try:
        return "device" in inspect.signature(mod.smoke_available).parameters
    except (TypeError, ValueError):
        return False


def quiet_libraries() -> None:
    """No progress bars or advisory warnings from transformers/huggingface_hub in a pull's output.

    Their "Loading weights" bar went to stderr, even under ``--json``.  Both read these
    variables when first imported; a caller's own settings win.
    """
    import os
    import sys

    for var, value in (("TRANSFORMERS_VERBOSITY", "error"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
        if not os.environ.get(var):
            os.environ[var] = value
    if "transformers" in sys.modules and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
        from transformers.utils import logging as tf_logging

        tf_logging.disable_progress_bar()
