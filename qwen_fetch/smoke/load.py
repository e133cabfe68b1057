"""The torch/transformers half of the smoke-load (the adapter around :mod:`qwen_fetch.smoke.check`).

Imported only by :func:`qwen_fetch.smoke.check.run_smoke`, after the pure checks have
passed; torch and transformers are imported inside the functions all the same,
so that importing this module never costs seconds.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_fetch.core.errors import Ref, SmokeError
from qwen_fetch.smoke.check import (
    SMOKE_PROMPT_IMAGE,
    SMOKE_PROMPT_TEXT,
    AutoClass,
    SmokeReport,
    resolve_device,
    resolve_dtype,
    synthetic_image_size,
)


@dataclass(frozen=True)
class _Inputs:
    tensors: dict[str, Any]
    kind: str  # "image+text" | "text"
    built_with: str
    decode: Callable[[list[int]], str]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def synthetic_image() -> Any:
    """A deterministic RGB test card: colour bars over a gradient (no file, no network)."""
    from PIL import Image, ImageDraw

    w, h = synthetic_image_size()
    img = Image.new("RGB", (w, h))
    px = img.load()
    assert px is not None  # a new in-memory image always has pixel access
    for y in range(h):
        for x in range(w):
            px[x, y] = (x * 255 // w, y * 255 // h, 128)
    draw = ImageDraw.Draw(img)
    bars = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 255, 0)]
    for i, colour in enumerate(bars):
        draw.rectangle([i * w // 4, h // 3, (i + 1) * w // 4 - 1, 2 * h // 3], fill=colour)
    return img


def _chat_template(model_dir: Path, tokenizer: Any) -> str | None:
    """The tokenizer's template, else the repo's chat_template.json / .jinja (Qwen3-VL ships both styles)."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.chat_template)
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    js = model_dir / "chat_template.json"
    if js.is_file():
        value = json.loads(js.read_text(encoding="utf-8")).get("chat_template")
        return str(value) if value else None
    return None


def _messages(prompt: str, *, image: bool) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    if image:
        content.insert(0, {"type": "image"})
    return [{"role": "user", "content": content}]


def _load_tokenizer(model_dir: Path, files: list[str], trust: bool) -> Any | None:
    if not any(f.startswith("tokenizer") or f in ("vocab.json", "tokenizer.model") for f in files):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust)
    except Exception as exc:  # a broken tokenizer is a smoke failure, reported in one line
        raise SmokeError(f"could not load the tokenizer from {model_dir}: {_first_line(exc)}",
                         hint="re-pull and verify the model; rerun with --debug for the traceback",
                         reference=Ref.TOKENIZER_FAILED) from exc


def _text_inputs(model_dir: Path, files: list[str], config: dict[str, Any], trust: bool) -> _Inputs:
    tok = _load_tokenizer(model_dir, files, trust)
    if tok is None:
        # No tokenizer shipped: a few fixed ids still exercise the forward pass and generate.
        import torch

        start = config.get("bos_token_id") or 1
        return _Inputs({"input_ids": torch.tensor([[int(start), 2, 3, 4]])}, "text", "token ids",
                       lambda ids: " ".join(map(str, ids)))
    template = _chat_template(model_dir, tok)
    if template:
        text = tok.apply_chat_template(_messages(SMOKE_PROMPT_TEXT, image=False), chat_template=template,
                                       tokenize=False, add_generation_prompt=True)
    else:
        text = SMOKE_PROMPT_TEXT
    enc = tok(text, return_tensors="pt")
    return _Inputs(dict(enc), "text", "tokenizer",
                   lambda ids: str(tok.decode(ids, skip_special_tokens=True)))


def _processor_inputs(model_dir: Path, trust: bool) -> _Inputs | None:
    """Through ``AutoProcessor`` (the path users take).  ``None`` when it cannot be built here,
    e.g. Qwen3-VL's video processor needs torchvision, which a CPU box may lack."""
    from transformers import AutoProcessor

    auto: Any = AutoProcessor
    try:
        proc = auto.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust)
    except Exception:  # noqa: BLE001 - fall back to tokenizer + image processor
        return None
    if not hasattr(proc, "image_processor") or not hasattr(proc, "apply_chat_template"):
        return None
    img = synthetic_image()
    msgs = _messages(SMOKE_PROMPT_IMAGE, image=True)
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    enc = proc(text=[text], images=[img], return_tensors="pt")
    return _Inputs(dict(enc), "image+text", "AutoProcessor",
                   lambda ids: str(proc.decode(ids, skip_special_tokens=True)))


def _manual_image_inputs(model_dir: Path, files: list[str], config: dict[str, Any], trust: bool) -> _Inputs | None:
    """Tokenizer + image processor, expanding the image placeholder as Qwen's processor does."""
    tok = _load_tokenizer(model_dir, files, trust)
    image_token_id = config.get("image_token_id")
    if tok is None or image_token_id is None or "preprocessor_config.json" not in files:
        return None
    from transformers import AutoImageProcessor

    auto: Any = AutoImageProcessor
    try:
        improc = auto.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust)
    except Exception:  # noqa: BLE001 - no usable image processor: text-only smoke instead
        return None
    merge = getattr(improc, "merge_size", None)
    template = _chat_template(model_dir, tok)
    image_token = tok.convert_ids_to_tokens(int(image_token_id))
    if not merge or not template or not image_token:
        return None
    pix = dict(improc(images=[synthetic_image()], return_tensors="pt"))
    if "image_grid_thw" not in pix:
        return None
    n = int(pix["image_grid_thw"][0].prod()) // (int(merge) ** 2)
    text = tok.apply_chat_template(_messages(SMOKE_PROMPT_IMAGE, image=True), chat_template=template,
                                   tokenize=False, add_generation_prompt=True)
    if text.count(image_token) != 1:
        return None
    text = text.replace(image_token, image_token * n)
    enc = dict(tok(text, return_tensors="pt"))
    enc.update(pix)
    return _Inputs(enc, "image+text", "tokenizer+image_processor",
                   lambda ids: str(tok.decode(ids, skip_special_tokens=True)))


def _build_inputs(model_dir: Path, files: list[str], auto_class: AutoClass, config: dict[str, Any],
                  trust: bool) -> _Inputs:
    try:
        if auto_class == "AutoModelForImageTextToText":
            built = _processor_inputs(model_dir, trust) or _manual_image_inputs(model_dir, files, config, trust)
            if built is not None:
                return built
        return _text_inputs(model_dir, files, config, trust)
    except SmokeError:
        raise
    except Exception as exc:  # any failure building inputs is one line plus a hint
        raise SmokeError(f"could not build smoke inputs for {model_dir}: {_first_line(exc)}",
                         hint="the processor files may be broken: re-pull and verify; --debug shows the traceback",
                         reference=Ref.INPUTS_FAILED) from exc


def _device_name(torch: Any, dev: str) -> str:
    if dev.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(dev)))
    return f"cpu ({platform.processor() or platform.machine()})"


def _model_class(transformers: Any, model_dir: Path, auto_class: AutoClass, trust: bool) -> Any:
    """The concrete class behind the Auto class, imported now so that load_seconds
    measures reading weights, not importing modeling code."""
    auto = getattr(transformers, auto_class)
    if trust:
        return auto  # remote code: the Auto class resolves (and imports) it
    try:
        # trust_remote_code=False explicitly: left unset, transformers *asks on the terminal*,
        # and a "y" there would bypass the pinning rule.
        config = transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
        return auto._model_mapping[type(config)]
    except Exception:  # noqa: BLE001 - let from_pretrained report the real problem
        return auto


def _load_model(torch: Any, cls: Any, model_dir: Path, auto_class: AutoClass, torch_dtype: Any, dev: str,
                trust: bool) -> Any:
    # On a GPU, device_map places the weights straight on the device (no CPU copy of 17 GB
    # first); transformers needs accelerate for that, so without it we load, then move.
    direct = dev.startswith("cuda") and importlib.util.find_spec("accelerate") is not None
    extra = {"device_map": dev} if direct else {}
    try:
        model = cls.from_pretrained(model_dir, dtype=torch_dtype, use_safetensors=True,
                                    local_files_only=True, trust_remote_code=trust, **extra)
        if not direct:
            model = model.to(dev)
    except torch.cuda.OutOfMemoryError as exc:
        raise SmokeError(f"out of GPU memory loading {model_dir} on {dev}",
                         hint="free the GPU, pick another with --device cuda:N, or try --dtype float16/bfloat16",
                         reference=Ref.OUT_OF_MEMORY) from exc
    except Exception as exc:  # any load failure is one line plus a hint
        msg = _first_line(exc)
        hint = "re-pull and verify the model; rerun with --debug for the traceback"
        if "trust_remote_code" in str(exc):
            hint = "this model ships its own code: review it, pin it in the lock, pass --trust-remote-code"
        raise SmokeError(f"could not load {model_dir} with {auto_class}: {msg}", hint=hint,
                         reference=Ref.LOAD_FAILED) from exc
    return model.eval()


def load_and_generate(model_dir: Path, *, files: list[str], auto_class: AutoClass, device: str, dtype: str,
                      trust_remote_code: bool, max_new_tokens: int) -> SmokeReport:
    """Load, run one generate, measure, and free the device memory (also on failure)."""
    import torch

    from qwen_fetch.smoke.check import read_config

    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    dev = resolve_device(device, cuda_count=cuda_count)
    on_gpu = dev.startswith("cuda")
    bf16 = bool(torch.cuda.is_bf16_supported()) if on_gpu else True
    dtype_name, note = resolve_dtype(dtype, dev, bf16_supported=bf16)
    torch_dtype = "auto" if dtype_name == "auto" else getattr(torch, dtype_name)
    config = read_config(model_dir)

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize(dev)

    if on_gpu:
        torch.cuda.set_device(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    model: Any = None
    inputs: _Inputs | None = None
    try:
        import transformers

        cls = _model_class(transformers, model_dir, auto_class, trust_remote_code)
        t0 = time.perf_counter()
        model = _load_model(torch, cls, model_dir, auto_class, torch_dtype, dev, trust_remote_code)
        sync()
        load_seconds = time.perf_counter() - t0
        inputs = _build_inputs(model_dir, files, auto_class, config, trust_remote_code)
        model_dtype = next(model.parameters()).dtype
        tensors = {k: (v.to(dev, dtype=model_dtype) if v.is_floating_point() else v.to(dev))
                   if hasattr(v, "is_floating_point") else v for k, v in inputs.tensors.items()}
        prompt_len = int(tensors["input_ids"].shape[-1])
        try:
            t1 = time.perf_counter()
            with torch.inference_mode():
                # min_new_tokens: a random or terse model must not stop at once; we time a fixed count.
                out = model.generate(**tensors, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                     do_sample=False)
            sync()
            gen_seconds = time.perf_counter() - t1
        except torch.cuda.OutOfMemoryError as exc:
            raise SmokeError(f"out of GPU memory generating on {dev}", hint="free the GPU or pick another one",
                             reference=Ref.OUT_OF_MEMORY) from exc
        except Exception as exc:  # any generate failure is one line plus a hint
            raise SmokeError(f"generate failed for {model_dir}: {_first_line(exc)}",
                             hint="the weights loaded but do not run: re-pull and verify; --debug for details",
                             reference=Ref.GENERATE_FAILED) from exc
        new_ids = [int(i) for i in out[0, prompt_len:].tolist()]
        if not new_ids:
            raise SmokeError("generate produced no tokens", hint="rerun with --debug", reference=Ref.GENERATE_FAILED)
        text = inputs.decode(new_ids)
        peak = int(torch.cuda.max_memory_allocated(dev)) if on_gpu else None
        weight_bytes = sum((model_dir / f).stat().st_size for f in files if f.endswith(".safetensors"))
        return SmokeReport(
            model_dir=str(model_dir), model_class=type(model).__name__, auto_class=auto_class, device=dev,
            device_name=_device_name(torch, dev), dtype=str(model_dtype).replace("torch.", ""), dtype_note=note,
            inputs=inputs.kind, processor=inputs.built_with, load_seconds=round(load_seconds, 3),
            generate_seconds=round(gen_seconds, 3), prompt_tokens=prompt_len, new_tokens=len(new_ids),
            tokens_per_second=round(len(new_ids) / gen_seconds, 2) if gen_seconds > 0 else 0.0,
            peak_gpu_memory_bytes=peak, parameters=int(sum(p.numel() for p in model.parameters())),
            weight_bytes=weight_bytes, generated_text=text)
    finally:
        # Free the device for whatever runs next (the deploy, the next smoke).
        del model, inputs
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()
