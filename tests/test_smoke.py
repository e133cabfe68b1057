"""Smoke-load: the pure safety/selection rules, the tiny model builders, and real loads on CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qwen_fetch.cli.smoke_cmd import pinned_code_paths
from qwen_fetch.core.errors import ExitCode, SmokeError, UsageError
from qwen_fetch.smoke.check import (
    check_remote_code,
    check_weights,
    choose_auto_class,
    resolve_device,
    resolve_dtype,
    run_smoke,
)

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "qwen3-vl-8b-instruct.json"
MODEL = "Qwen/Qwen3-VL-8B-Instruct"


# --- pure rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("files, expected", [
    (["config.json", "model.safetensors"], ["model.safetensors"]),
    (["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "pytorch_model.bin"],
     ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
])
def test_check_weights_accepts_safetensors(files: list[str], expected: list[str]) -> None:
    assert check_weights(files) == expected


@pytest.mark.parametrize("pickle_name", ["pytorch_model.bin", "model.pt", "weights.pth", "last.ckpt",
                                         "pytorch_model-00001-of-00002.bin"])
def test_check_weights_refuses_pickle_only(pickle_name: str) -> None:
    with pytest.raises(SmokeError) as ei:
        check_weights(["config.json", "tokenizer.json", pickle_name])
    assert ei.value.reference == "pickle-only-checkpoint"
    assert ei.value.exit_code == ExitCode.SMOKE
    assert pickle_name in ei.value.message and ei.value.hint


def test_check_weights_refuses_no_weights() -> None:
    with pytest.raises(SmokeError) as ei:
        check_weights(["config.json", "tokenizer.json"])
    assert ei.value.reference == "no-weights"


def test_remote_code_off_unless_asked_even_if_pinned() -> None:
    assert check_remote_code(["config.json", "m.py"], trust_remote_code=False, pinned_paths={"m.py"}) is False


@pytest.mark.parametrize("pinned, unpinned", [
    (None, "custom_model.py"),  # no lock entry at all
    (set(), "custom_model.py"),
    ({"custom_model.py"}, "sub/helper.py"),  # one file pinned, another not
])
def test_remote_code_refused_when_code_not_pinned(pinned: set[str] | None, unpinned: str) -> None:
    files = ["config.json", "custom_model.py", "sub/helper.py", "model.safetensors"]
    with pytest.raises(SmokeError) as ei:
        check_remote_code(files, trust_remote_code=True, pinned_paths=pinned)
    assert ei.value.reference == "remote-code-not-pinned"
    if pinned is not None:
        assert unpinned in ei.value.message
    assert ei.value.hint


def test_remote_code_allowed_when_every_code_file_pinned() -> None:
    files = ["config.json", "custom_model.py", "sub/helper.py"]
    assert check_remote_code(files, trust_remote_code=True, pinned_paths={"custom_model.py", "sub/helper.py"})


def test_pinned_code_paths_drops_code_changed_since_pinning(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("print('pinned')\n")
    (tmp_path / "b.py").write_text("print('tampered')\n")
    import hashlib

    sha_a = hashlib.sha256(b"print('pinned')\n").hexdigest()
    pins = {"a.py": sha_a, "b.py": hashlib.sha256(b"print('original')\n").hexdigest(), "config.json": "0" * 64,
            "gone.py": sha_a}
    assert pinned_code_paths(tmp_path, pins) == {"a.py", "config.json"}


def test_auto_class_for_real_qwen3_vl_config_and_text_model() -> None:
    real = json.loads(REFERENCE.read_text())["config"] if REFERENCE.is_file() else {
        "architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl", "vision_config": {}}
    assert choose_auto_class(real) == "AutoModelForImageTextToText"
    assert choose_auto_class({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}) == "AutoModelForCausalLM"


@pytest.mark.parametrize("requested, count, expected", [
    ("auto", 0, "cpu"), ("auto", 2, "cuda:0"), ("cpu", 2, "cpu"), ("cuda", 1, "cuda:0"), ("CUDA:1", 2, "cuda:1"),
])
def test_resolve_device(requested: str, count: int, expected: str) -> None:
    assert resolve_device(requested, cuda_count=count) == expected


@pytest.mark.parametrize("requested, count, error", [
    ("cuda", 0, SmokeError), ("cuda:2", 2, UsageError), ("gpu", 1, UsageError), ("cuda:x", 1, UsageError),
])
def test_resolve_device_errors(requested: str, count: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        resolve_device(requested, cuda_count=count)


@pytest.mark.parametrize("requested, device, bf16, expected, noted", [
    ("bfloat16", "cuda:0", True, "bfloat16", False),
    ("bf16", "cpu", True, "bfloat16", False),
    ("bfloat16", "cuda:0", False, "float16", True),  # pre-Ampere GPU
    ("bfloat16", "cpu", False, "float32", True),
    ("float16", "cpu", True, "float32", True),
    ("fp16", "cuda:0", True, "float16", False),
    ("auto", "cpu", True, "auto", False),
])
def test_resolve_dtype(requested: str, device: str, bf16: bool, expected: str, noted: bool) -> None:
    dtype, note = resolve_dtype(requested, device, bf16_supported=bf16)
    assert dtype == expected
    assert (note is not None) == noted


def test_resolve_dtype_rejects_unknown() -> None:
    with pytest.raises(UsageError):
        resolve_dtype("int4", "cpu", bf16_supported=True)


# --- real loads on CPU (tiny models) ----------------------------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.support.tiny_model import (
    QWEN_SPECIAL_TOKENS,
    build_pickle_only_model,
    build_remote_code_model,
    build_tiny_qwen3_vl,
    build_tiny_text_model,
)

BUNDLED = Path(__file__).resolve().parent.parent / "qwen_fetch" / "demo" / "tiny-qwen3-vl"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "vl": build_tiny_qwen3_vl(root / "vl", seed=1),
        "text": build_tiny_text_model(root / "text"),
        "pickle": build_pickle_only_model(root / "pickle"),
        "remote": build_remote_code_model(root / "remote"),
    }


def test_tiny_qwen3_vl_has_the_real_layout_and_consistent_token_ids(models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    d = models["vl"]
    names = {p.name for p in d.iterdir()}
    real = {"chat_template.json", "config.json", "generation_config.json", "merges.txt",
            "model.safetensors.index.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
            "video_preprocessor_config.json", "vocab.json"}
    assert real <= names
    shards = sorted(n for n in names if n.endswith(".safetensors"))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = json.loads((d / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen3VLForConditionalGeneration"] and cfg["model_type"] == "qwen3_vl"
    tok = AutoTokenizer.from_pretrained(d)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    assert cfg["image_token_id"] == ids["<|image_pad|>"]
    assert cfg["video_token_id"] == ids["<|video_pad|>"]
    assert cfg["vision_start_token_id"] == ids["<|vision_start|>"]
    assert cfg["vision_end_token_id"] == ids["<|vision_end|>"]
    assert max(ids.values()) < cfg["text_config"]["vocab_size"]
    # each special token is one token, not split into bytes
    assert tok("<|im_start|>user<|image_pad|>").input_ids[0] == ids["<|im_start|>"]


def test_bundled_demo_model_is_small_and_complete() -> None:
    total = sum(p.stat().st_size for p in BUNDLED.iterdir())
    assert total < 3_000_000
    assert (BUNDLED / "model-00002-of-00002.safetensors").is_file()
    assert json.loads((BUNDLED / "config.json").read_text())["model_type"] == "qwen3_vl"


@pytest.mark.parametrize("which", ["built", "bundled"])
def test_smoke_qwen3_vl_on_cpu_goes_through_the_image_path(models: dict[str, Path], which: str) -> None:
    d = models["vl"] if which == "built" else BUNDLED
    r = run_smoke(d, device="cpu", max_new_tokens=5)
    assert r.model_class == "Qwen3VLForConditionalGeneration"
    assert r.auto_class == "AutoModelForImageTextToText"
    assert r.inputs == "image+text"
    # the synthetic image expands into several <|image_pad|> tokens, plus the chat-template text
    assert r.prompt_tokens > 20
    assert r.new_tokens == 5
    assert r.tokens_per_second > 0 and r.load_seconds > 0 and r.generate_seconds > 0
    assert r.device == "cpu" and r.device_name.startswith("cpu") and r.peak_gpu_memory_bytes is None
    assert r.dtype == "bfloat16"
    assert r.weight_bytes == sum(p.stat().st_size for p in d.glob("*.safetensors"))
    assert 100_000 < r.parameters < 1_000_000
    d2 = r.to_dict()
    assert d2["generated_text"] == r.generated_text and json.dumps(d2)


def test_smoke_text_model_and_dtype_fallback(models: dict[str, Path]) -> None:
    r = run_smoke(models["text"], device="cpu", dtype="float16", max_new_tokens=3)
    assert r.model_class == "Qwen3ForCausalLM" and r.auto_class == "AutoModelForCausalLM"
    assert r.inputs == "text" and r.processor == "tokenizer"
    assert r.new_tokens == 3
    assert r.dtype == "float32" and r.dtype_note


def test_smoke_refuses_pickle_only_checkpoint(models: dict[str, Path]) -> None:
    with pytest.raises(SmokeError) as ei:
        run_smoke(models["pickle"], device="cpu")
    assert ei.value.reference == "pickle-only-checkpoint"


def test_smoke_remote_code(models: dict[str, Path]) -> None:
    d = models["remote"]
    # not asked for: transformers must refuse the custom model_type (and never prompt)
    with pytest.raises(SmokeError) as ei:
        run_smoke(d, device="cpu")
    assert ei.value.reference == "load-failed" and "trust-remote-code" in (ei.value.hint or "")
    # asked for, but the code is not pinned
    with pytest.raises(SmokeError) as ei:
        run_smoke(d, device="cpu", trust_remote_code=True, pinned_paths={"config.json"})
    assert ei.value.reference == "remote-code-not-pinned"
    # asked for and pinned: the custom class really runs
    r = run_smoke(d, device="cpu", trust_remote_code=True, pinned_paths={"custom_model.py"}, max_new_tokens=2)
    assert r.model_class == "PinnedQwen3ForCausalLM" and r.new_tokens == 2


def test_smoke_broken_weights_is_a_smoke_error(models: dict[str, Path], tmp_path: Path) -> None:
    d = tmp_path / "broken"
    shutil.copytree(models["text"], d)
    (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(SmokeError) as ei:
        run_smoke(d, device="cpu")
    assert ei.value.exit_code == ExitCode.SMOKE and ei.value.hint


# --- CLI end to end: pulled from the loopback hub, then smoke-loaded on CPU ----------------------


def test_pull_then_smoke_cli(cli, store, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    commit = store.add_commit(MODEL, {p.name: p for p in BUNDLED.iterdir() if p.is_file()})
    # pull ends with the smoke-load (on CPU here: --device cpu, and --smoke require makes it mandatory)
    r = cli("pull", MODEL, "--config", str(mirrors), "--cache-dir", "cache", "--smoke", "require",
            "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    smoke = r.json()["smoke"]
    assert smoke["model_class"] == "Qwen3VLForConditionalGeneration" and smoke["inputs"] == "image+text"
    assert smoke["new_tokens"] > 0 and smoke["model_dir"].endswith(f"snapshots/{commit}")
    r = cli("smoke", MODEL, "--cache-dir", "cache", "--device", "cpu", "--max-new-tokens", "3", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["ok"] is True and out["commit"] == commit and out["model_id"] == MODEL
    assert out["inputs"] == "image+text" and out["new_tokens"] == 3
    assert out["model_dir"].endswith(f"snapshots/{commit}")
    # a model id that is not cached: one line, a hint, no traceback
    r = cli("smoke", "Qwen/Not-There", "--cache-dir", "cache")
    assert r.exit_code == ExitCode.INTEGRITY and "qwen-fetch pull Qwen/Not-There" in r.stderr
    assert "Traceback" not in r.stderr


def test_smoke_cli_refuses_pickle_and_unpinned_code(cli, models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    r = cli("smoke", str(models["pickle"]))
    assert r.exit_code == ExitCode.SMOKE
    assert "pickle" in r.stderr and "hint" in r.stderr and "Traceback" not in r.stderr
    r = cli("smoke", str(models["remote"]), "--trust-remote-code", "--json")
    assert r.exit_code == ExitCode.SMOKE
    assert r.json()["error"] == "remote-code-not-pinned"


def test_help_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from qwen_fetch.cli.app import app; "
            "r = CliRunner().invoke(app, ['smoke', '--help']); assert r.exit_code == 0, r.output; "
            "assert 'MODEL_ID|PATH' in r.output; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
