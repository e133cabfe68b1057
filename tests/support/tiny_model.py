"""Tiny random-weight models saved by ``transformers``, for tests and the demo.

``build_tiny_qwen3_vl`` writes a real ``Qwen3VLForConditionalGeneration`` (the
architecture of Qwen/Qwen3-VL-8B-Instruct) with tiny dimensions, under the real
repo's file names: sharded safetensors plus index, config, generation config,
a byte-level BPE tokenizer built locally (vocab.json, merges.txt,
tokenizer.json, tokenizer_config.json) carrying the Qwen special tokens at the
ids the config points to, the image and video processor configs and a chat
template, so ``AutoProcessor`` + ``AutoModelForImageTextToText`` load it
offline and an image + prompt goes through ``generate``.

Nothing here touches the network.  torch/transformers are imported inside the
functions: importing this module is cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The Qwen2/Qwen3 special tokens, in the order of their real ids (151643...).
# Keeping the order means every id is ``special_base + offset`` as in the real vocab.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",  # 151643
    "<|im_start|>",  # 151644
    "<|im_end|>",  # 151645
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",  # 151652
    "<|vision_end|>",  # 151653
    "<|vision_pad|>",
    "<|image_pad|>",  # 151655
    "<|video_pad|>",  # 151656
)
REAL_SPECIAL_BASE = 151643  # id of <|endoftext|> in the real Qwen vocab

# A few BPE merges so merges.txt is not empty and common words tokenize as more than bytes.
_TINY_MERGES: tuple[tuple[str, str], ...] = (
    ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("r", "e"), ("o", "n"), ("e", "r"),
)

# Qwen3-VL's chat template, reduced to what a smoke test and a chat need: text and
# image/video parts, system prompt, generation prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tiny_vocab(special_base: int | None = None) -> tuple[dict[str, int], list[tuple[str, str]], dict[str, int]]:
    """Byte-level BPE vocab, merges and special-token ids.

    ``special_base`` places ``<|endoftext|>`` (and the specials after it) at that id,
    padding the regular vocab with filler tokens; ``None`` puts them right after the
    bytes and merges (tiny vocab).  ``REAL_SPECIAL_BASE`` reproduces the real ids.
    """
    alphabet = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for b in range(256):
        vocab[alphabet[b]] = len(vocab)
    merges = []
    for left, right in _TINY_MERGES:
        vocab[left + right] = len(vocab)
        merges.append((left, right))
    base = len(vocab) if special_base is None else special_base
    if base < len(vocab):
        raise ValueError(f"special_base {base} is below the regular vocab size {len(vocab)}")
    i = 0
    while len(vocab) < base:
        # Filler tokens: unique strings over the byte alphabet, never produced by the merges.
        vocab[f"ĠĠfill{i}"] = len(vocab)
        i += 1
    specials = {tok: base + k for k, tok in enumerate(QWEN_SPECIAL_TOKENS)}
    vocab.update(specials)
    return vocab, merges, specials


def _tokenizer(special_base: int | None = None) -> Any:
    from transformers import Qwen2Tokenizer

    vocab, merges, _ = tiny_vocab(special_base)
    tokenizer_cls: Any = Qwen2Tokenizer  # its stubs predate tuple merges and unk_token=None
    tok = tokenizer_cls(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
        model_max_length=262144,
    )
    # Registers the specials at their vocab ids (already present, so no new ids).
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _image_processor(full_size: bool = False) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    # Real Qwen3-VL: patch 16, merge 2, temporal 2, mean/std 0.5, 256*256..4096*4096 pixels.
    # The tiny model keeps the pixel bounds small so a synthetic image costs a few tokens.
    lo, hi = (65536, 16777216) if full_size else (32 * 32, 64 * 64)
    return Qwen2VLImageProcessorPil(
        patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        min_pixels=lo, max_pixels=hi,
    )


def qwen3_vl_config(*, special_base: int | None = None, full_size: bool = False, **text_overrides: Any) -> Any:
    """A ``Qwen3VLConfig``: tiny dimensions, or the real 8B ones (``full_size``)."""
    from transformers import Qwen3VLConfig

    if full_size:
        specials = {tok: REAL_SPECIAL_BASE + k for k, tok in enumerate(QWEN_SPECIAL_TOKENS)}
        text: dict[str, Any] = {
            "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 262144,
            "rope_theta": 5000000, "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20],
                                              "mrope_interleaved": True},
        }
        vision: dict[str, Any] = {
            "depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16, "out_hidden_size": 4096,
            "num_position_embeddings": 2304, "deepstack_visual_indexes": [8, 16, 24],
        }
    else:
        specials = tiny_vocab(special_base)[2]
        vocab_size = max(specials.values()) + 1
        text = {
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "vocab_size": (vocab_size + 63) // 64 * 64,
            "max_position_embeddings": 4096, "rope_theta": 5000000,
            "rope_scaling": {"rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True},
        }
        vision = {
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
            "num_position_embeddings": 64, "deepstack_visual_indexes": [0],
        }
    text.update(text_overrides)
    text.update(rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False,
                bos_token_id=specials["<|endoftext|>"], eos_token_id=specials["<|im_end|>"])
    vision.update(patch_size=16, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                  hidden_act="gelu_pytorch_tanh")
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=False,
        image_token_id=specials["<|image_pad|>"], video_token_id=specials["<|video_pad|>"],
        vision_start_token_id=specials["<|vision_start|>"], vision_end_token_id=specials["<|vision_end|>"],
    )


def _generation_config(specials: dict[str, int]) -> Any:
    from transformers import GenerationConfig

    config_cls: Any = GenerationConfig
    return config_cls(
        bos_token_id=specials["<|endoftext|>"],
        eos_token_id=[specials["<|im_end|>"], specials["<|endoftext|>"]],
        pad_token_id=specials["<|endoftext|>"],
        do_sample=False,
    )


def save_processor(out_dir: Path, *, special_base: int | None = None, full_size: bool = False) -> None:
    """Tokenizer, image/video processor configs and chat template, as Qwen3-VL ships them.

    The files are written one by one rather than through ``Qwen3VLProcessor``: building
    that object needs the video processor, hence torchvision, which CPU CI lacks.
    ``AutoProcessor`` reads them back wherever torchvision is installed.
    """
    tok = _tokenizer(special_base)
    tok.save_pretrained(out_dir)
    # Qwen ships the template in tokenizer_config.json too, so a bare AutoTokenizer can chat.
    _patch_json(out_dir / "tokenizer_config.json", {"chat_template": CHAT_TEMPLATE})
    image = _image_processor(full_size)
    image.save_pretrained(out_dir)
    _patch_json(out_dir / "preprocessor_config.json", {"processor_class": "Qwen3VLProcessor"})
    (out_dir / "video_preprocessor_config.json").write_text(_dumps({
        "video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor",
        "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "size": {"longest_edge": 64 * 64 * 8, "shortest_edge": 32 * 32},
        "do_sample_frames": True, "fps": 2, "min_frames": 4, "max_frames": 8,
    }))
    (out_dir / "chat_template.json").write_text(_dumps({"chat_template": CHAT_TEMPLATE}))
    (out_dir / "chat_template.jinja").unlink(missing_ok=True)  # chat_template.json is the real repo's file
    _write_vocab_files(out_dir, special_base)


def _dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _patch_json(path: Path, extra: dict[str, Any]) -> None:
    data = json.loads(path.read_text())
    data.update(extra)
    path.write_text(_dumps(data))


def _write_vocab_files(out_dir: Path, special_base: int | None) -> None:
    """vocab.json + merges.txt (the real repo ships them beside tokenizer.json)."""
    vocab, merges, specials = tiny_vocab(special_base)
    regular = {t: i for t, i in vocab.items() if t not in specials}
    if not (out_dir / "vocab.json").exists():
        (out_dir / "vocab.json").write_text(json.dumps(regular, ensure_ascii=False, sort_keys=False))
    if not (out_dir / "merges.txt").exists():
        (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")


def _save_sharded(model: Any, out_dir: Path, shards: int) -> None:
    """``save_pretrained`` into exactly ``shards`` files when the weights allow it."""
    total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    if shards <= 1:
        model.save_pretrained(out_dir, max_shard_size=total * 2)
        return
    # Greedy packing in state-dict order: the first size that yields `shards` files wins.
    for frac in (1.0, 1.05, 1.1, 1.2, 1.35, 1.5):
        limit = int(total / shards * frac) + 1
        model.save_pretrained(out_dir, max_shard_size=limit)
        got = sorted(out_dir.glob("model-*-of-*.safetensors"))
        if len(got) == shards:
            return
        for p in got:
            p.unlink()
        (out_dir / "model.safetensors.index.json").unlink(missing_ok=True)
    raise RuntimeError(f"could not save the model in {shards} shards")


def build_tiny_qwen3_vl(out_dir: Path, seed: int = 0, *, shards: int = 2) -> Path:
    """Save a random-weight tiny Qwen3-VL (real architecture and file names) into ``out_dir``."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = qwen3_vl_config()
    torch.manual_seed(seed)
    model: Any = Qwen3VLForConditionalGeneration(config)
    model = model.to(torch.bfloat16).eval()
    model.generation_config = _generation_config(tiny_vocab()[2])
    _save_sharded(model, out_dir, shards)
    save_processor(out_dir)
    return out_dir


def build_full_size_qwen3_vl(out_dir: Path, seed: int = 0, *, device: str = "cuda",
                             max_shard_size: str = "5GB") -> Path:
    """Random-weight Qwen3-VL-8B-Instruct: the real config, bf16, about 17.5 GB in four
    shards like the real repo (``max_shard_size`` 5GB), with a locally built tokenizer whose
    special tokens sit at the real ids (151643...).  For the GPU benchmark: initialised on
    ``device`` because 8.8e9 random numbers on a CPU take minutes."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = qwen3_vl_config(full_size=True)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model: Any = Qwen3VLForConditionalGeneration(config)
            model.eval()
    finally:
        torch.set_default_dtype(previous)
    specials = {tok: REAL_SPECIAL_BASE + k for k, tok in enumerate(QWEN_SPECIAL_TOKENS)}
    model.generation_config = _generation_config(specials)
    model.save_pretrained(out_dir, max_shard_size=max_shard_size)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    save_processor(out_dir, special_base=REAL_SPECIAL_BASE, full_size=True)
    return out_dir


def build_tiny_text_model(out_dir: Path, seed: int = 0) -> Path:
    """Save a random-weight tiny ``Qwen3ForCausalLM`` (text only) with the same tokenizer."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _, _, specials = tiny_vocab()
    config = Qwen3Config(
        vocab_size=(max(specials.values()) + 1 + 63) // 64 * 64, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=specials["<|endoftext|>"], eos_token_id=specials["<|im_end|>"],
    )
    torch.manual_seed(seed)
    model: Any = Qwen3ForCausalLM(config)
    model = model.to(torch.bfloat16).eval()
    model.generation_config = _generation_config(specials)
    model.save_pretrained(out_dir)
    tok = _tokenizer()
    tok.save_pretrained(out_dir)
    _write_vocab_files(out_dir, None)
    return out_dir


def build_pickle_only_model(out_dir: Path, seed: int = 0) -> Path:
    """A text model whose only weights are a pickle ``pytorch_model.bin`` (to test refusal)."""
    import torch

    out_dir = Path(out_dir)
    build_tiny_text_model(out_dir, seed)
    state: dict[str, Any] = {}
    from safetensors.torch import load_file

    for st in sorted(out_dir.glob("*.safetensors")):
        state.update(load_file(st))
        st.unlink()
    (out_dir / "model.safetensors.index.json").unlink(missing_ok=True)
    torch.save(state, out_dir / "pytorch_model.bin")
    return out_dir


REMOTE_CODE = '''"""Custom code for a qwen-fetch test model: a renamed Qwen3 causal LM (harmless)."""
from transformers import Qwen3Config, Qwen3ForCausalLM


class PinnedQwen3Config(Qwen3Config):
    model_type = "pinned_qwen3"


class PinnedQwen3ForCausalLM(Qwen3ForCausalLM):
    config_class = PinnedQwen3Config
'''


def build_remote_code_model(out_dir: Path, seed: int = 0) -> Path:
    """A tiny text model that needs ``trust_remote_code``: ``config.json`` maps a custom
    ``model_type`` through ``auto_map`` to ``custom_model.py`` (a renamed Qwen3)."""
    out_dir = Path(out_dir)
    build_tiny_text_model(out_dir, seed)
    (out_dir / "custom_model.py").write_text(REMOTE_CODE)
    _patch_json(out_dir / "config.json", {
        "model_type": "pinned_qwen3",
        "architectures": ["PinnedQwen3ForCausalLM"],
        "auto_map": {"AutoConfig": "custom_model.PinnedQwen3Config",
                     "AutoModelForCausalLM": "custom_model.PinnedQwen3ForCausalLM"},
    })
    return out_dir


def tiny_model_files(model_dir: Path) -> dict[str, Path]:
    """``{repo path: file}`` for every file under ``model_dir`` (for ``RepoStore.add_commit``)."""
    model_dir = Path(model_dir)
    return {p.relative_to(model_dir).as_posix(): p for p in sorted(model_dir.rglob("*")) if p.is_file()}
