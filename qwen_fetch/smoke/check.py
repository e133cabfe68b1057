"""Smoke-load: prove a downloaded model loads and generates.

The decisions are pure functions over plain data (file lists, config dicts,
device facts), so they are tested without torch: which weights are allowed,
whether remote code may run, which Auto class loads the config, which device
and dtype to use.  :func:`run_smoke` applies them, then hands the heavy part
to :mod:`qwen_fetch.smoke.load`, which imports torch and transformers lazily.

Safety rules (README, "Smoke-load"):

* weights are loaded from safetensors only (``use_safetensors=True``); a
  checkpoint whose only weights are pickles (``*.bin``, ``*.pt``, ``*.pth``,
  ``*.ckpt``) is refused, since unpickling runs arbitrary code;
* ``trust_remote_code`` is honoured only when the user asks for it *and* every
  ``*.py`` file in the model folder is pinned in the lock (the caller passes
  the pinned paths whose sha256 it has checked);
* everything is read from the local folder (``local_files_only=True``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from qwen_fetch.core.errors import Ref, SmokeError, UsageError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
DTYPES = ("bfloat16", "float16", "float32", "auto")
SMOKE_EXTRA_HINT = "pip install 'qwen-fetch[smoke]'"

AutoClass = Literal["AutoModelForImageTextToText", "AutoModelForCausalLM"]

# model_type values of vision-language models that load through AutoModelForImageTextToText
# even when their config lacks a vision_config key (most carry one).
_VLM_TYPES = frozenset({"qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl", "llava", "idefics3", "gemma3"})


@dataclass(frozen=True)
class SmokeReport:
    """What one smoke-load measured.  Memory is ``None`` on CPU."""

    model_dir: str
    model_class: str
    auto_class: str
    device: str
    device_name: str
    dtype: str
    dtype_note: str | None
    inputs: str  # "image+text" or "text"
    processor: str  # how inputs were built: AutoProcessor, tokenizer+image_processor, tokenizer, token ids
    load_seconds: float
    generate_seconds: float
    prompt_tokens: int
    new_tokens: int
    tokens_per_second: float
    peak_gpu_memory_bytes: int | None
    parameters: int
    weight_bytes: int
    generated_text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- pure decisions --------------------------------------------------------------------------


def list_model_files(model_dir: Path) -> list[str]:
    """Relative posix paths of the files under ``model_dir`` (snapshot symlinks followed), sorted."""
    return sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")
                  if p.is_file() and ".cache" not in p.relative_to(model_dir).parts)


def check_weights(files: Iterable[str], where: str = "the model folder") -> list[str]:
    """The safetensors weight files; refuse pickle-only or weightless checkpoints."""
    names = list(files)
    safetensors = [f for f in names if f.endswith(".safetensors")]
    if safetensors:
        return safetensors
    pickles = [f for f in names if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise SmokeError(
            f"refusing to load {where}: its only weights are pickle files ({', '.join(pickles[:3])}), "
            "which can run arbitrary code when loaded",
            hint="use a revision that ships *.safetensors (most hubs convert them: look for a "
                 "refs/pr/N 'Adding safetensors' branch), or convert it yourself in a sandbox",
            reference=Ref.PICKLE_ONLY_CHECKPOINT)
    raise SmokeError(f"no weights in {where} (no *.safetensors file)",
                     hint="pull the weights too: check --include/--exclude", reference=Ref.NO_WEIGHTS)


def code_files(files: Iterable[str]) -> list[str]:
    """Python files that ``trust_remote_code`` would import."""
    return sorted(f for f in files if f.endswith(".py"))


def check_remote_code(files: Iterable[str], *, trust_remote_code: bool, pinned_paths: set[str] | None) -> bool:
    """Whether transformers may run the repo's own code.

    Without ``trust_remote_code`` this is always ``False`` (transformers then refuses
    custom architectures by itself).  With it, every ``*.py`` file must be pinned.
    """
    if not trust_remote_code:
        return False
    py = code_files(files)
    if pinned_paths is None:
        raise SmokeError(
            "--trust-remote-code needs a lock entry that pins the model's code files, and there is none",
            hint="pin the model first (qwen-fetch lock MODEL, or pull it with a lock), then pass --lock FILE",
            reference=Ref.REMOTE_CODE_NOT_PINNED)
    unpinned = [f for f in py if f not in pinned_paths]
    if unpinned:
        raise SmokeError(
            f"refusing --trust-remote-code: {len(unpinned)} code file(s) not pinned in the lock "
            f"or changed since: {', '.join(unpinned[:5])}",
            hint="review the code, pin it (qwen-fetch lock MODEL --update) and re-pull; "
                 "never run code the lock does not pin",
            reference=Ref.REMOTE_CODE_NOT_PINNED)
    return True


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SmokeError(f"no config.json in {model_dir}", hint="is this a transformers model folder?",
                         reference=Ref.NO_CONFIG) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SmokeError(f"unreadable config.json in {model_dir}: {exc}", hint="re-pull the model, then verify it",
                         reference=Ref.BAD_CONFIG) from exc
    if not isinstance(data, dict):
        raise SmokeError(f"config.json in {model_dir} is not a JSON object", hint="re-pull the model",
                         reference=Ref.BAD_CONFIG)
    return data


def choose_auto_class(config: dict[str, Any]) -> AutoClass:
    """Vision-language configs load as image-text-to-text models, the rest as causal LMs."""
    archs = config.get("architectures") or []
    if "vision_config" in config or config.get("model_type") in _VLM_TYPES:
        return "AutoModelForImageTextToText"
    if any(str(a).endswith("ForConditionalGeneration") for a in archs) and "text_config" in config:
        return "AutoModelForImageTextToText"
    return "AutoModelForCausalLM"


_CUDA_RE = re.compile(r"^cuda(:\d+)?$")


def check_device(requested: str) -> str:
    """The ``--device`` value, normalised; an unknown one is a usage error (checked before any download)."""
    req = requested.strip().lower()
    if req not in ("auto", "cpu") and not _CUDA_RE.match(req):
        raise UsageError(f"unknown --device {requested!r}", hint="use auto, cpu, cuda or cuda:N")
    return req


def resolve_device(requested: str, *, cuda_count: int) -> str:
    """``auto`` -> ``cuda:0`` when a GPU is visible, else ``cpu``; ``cuda`` -> ``cuda:0``."""
    req = check_device(requested)
    if req == "auto":
        return "cuda:0" if cuda_count > 0 else "cpu"
    if req == "cpu":
        return "cpu"
    index = int(req.split(":")[1]) if ":" in req else 0
    if cuda_count == 0:
        raise SmokeError(f"--device {requested} but no CUDA GPU is visible",
                         hint="use --device cpu (slow for large models), or check nvidia-smi / CUDA_VISIBLE_DEVICES",
                         reference=Ref.NO_GPU)
    if index >= cuda_count:
        raise UsageError(f"--device {requested}: only {cuda_count} GPU(s) visible (cuda:0..cuda:{cuda_count - 1})",
                         hint="pick an existing index")
    return f"cuda:{index}"


def resolve_dtype(requested: str, device: str, *, bf16_supported: bool) -> tuple[str, str | None]:
    """The dtype to load in, and a note when it differs from what was asked.

    bf16 is the default (Qwen3-VL ships bf16).  A GPU without bf16 gets fp16; fp16
    on CPU becomes fp32, since many CPU kernels lack half precision.  ``auto`` takes
    the checkpoint's own dtype.
    """
    req = requested.strip().lower()
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    req = aliases.get(req, req)
    if req not in DTYPES:
        raise UsageError(f"unknown --dtype {requested!r}", hint="use bfloat16 (default), float16, float32 or auto")
    on_cpu = device == "cpu"
    if req == "bfloat16" and not bf16_supported:
        if on_cpu:
            return "float32", "bfloat16 is not supported on this CPU; loaded in float32"
        return "float16", "this GPU has no bfloat16; loaded in float16"
    if req == "float16" and on_cpu:
        return "float32", "float16 is slow or unsupported on CPU; loaded in float32"
    return req, None


def synthetic_image_size() -> tuple[int, int]:
    """A small, non-square image: enough pixels for the real Qwen3-VL minimum, cheap for tiny ones."""
    return (320, 256)


SMOKE_PROMPT_IMAGE = "Describe this image in one sentence."
SMOKE_PROMPT_TEXT = "Name three colours."


# --- entry points ----------------------------------------------------------------------------


def _gpu_device_nodes() -> bool:
    """Whether this machine exposes any GPU device node (NVIDIA or AMD ROCm), without importing torch."""
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*") or glob.glob("/proc/driver/nvidia/gpus/*") or glob.glob("/dev/kfd"))


def smoke_available(device: str = "auto") -> tuple[bool, str]:
    """Whether a smoke-load can run here: the [smoke] extra, and a GPU unless ``device`` is cpu."""
    import importlib.util

    missing = [m for m in ("torch", "transformers", "safetensors", "PIL") if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"the smoke extra is not installed (missing {', '.join(missing)}): {SMOKE_EXTRA_HINT}"
    if device.strip().lower() == "cpu":
        return True, "cpu (requested)"
    if not _gpu_device_nodes():
        # Cheap check first: importing torch costs seconds and ~300 MB on every pull.
        return False, "no GPU: no NVIDIA/AMD device nodes found (use --device cpu to smoke-load on the CPU anyway)"
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return False, "no GPU: torch sees no CUDA device (use --device cpu to smoke-load on the CPU anyway)"
    return True, torch.cuda.get_device_name(0)


def run_smoke(
    model_dir: Path,
    *,
    device: str = "auto",
    dtype: str = "bfloat16",
    trust_remote_code: bool = False,
    pinned_paths: set[str] | None = None,
    max_new_tokens: int = 8,
) -> SmokeReport:
    """Load ``model_dir`` with transformers on ``device`` and generate ``max_new_tokens`` tokens.

    Raises :class:`SmokeError` (exit 5) for refusals and for load or generation failures,
    :class:`UsageError` for bad options.  GPU memory is released before returning.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UsageError(f"{model_dir} is not a directory", hint="pass a model folder or a cached MODEL_ID")
    if max_new_tokens < 1:
        raise UsageError("max_new_tokens must be at least 1", hint="e.g. 8")
    files = list_model_files(model_dir)
    check_weights(files, str(model_dir))
    remote = check_remote_code(files, trust_remote_code=trust_remote_code, pinned_paths=pinned_paths)
    config = read_config(model_dir)
    auto_class = choose_auto_class(config)

    ok, why = smoke_available("cpu")
    if not ok:
        raise SmokeError(f"cannot smoke-load: {why}", hint=SMOKE_EXTRA_HINT, reference=Ref.SMOKE_EXTRA_MISSING)
    from qwen_fetch.smoke import load as smoke_load

    return smoke_load.load_and_generate(
        model_dir, files=files, auto_class=auto_class, device=device, dtype=dtype,
        trust_remote_code=remote, max_new_tokens=max_new_tokens)
