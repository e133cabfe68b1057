"""qwen-fetch: fast, resumable, pinned and verified model downloads."""

__version__ = "0.1.0"
