"""Secrets are checked when read and never printed: tokens with line breaks, URLs with credentials, --debug.

A token value that cannot be sent in a header (a pasted newline, a control or
non-ASCII character) is a configuration error (exit 2) that names the variable
and never shows the value; it never reaches a request.  An endpoint URL with
``user:password@`` is masked in every error, and ``--debug`` tracebacks go
through the same masking.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_fetch.core.errors import ConfigError
from qwen_fetch.core.redact import scrub
from qwen_fetch.sources.config import load_config, mask_url, read_token
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer

CANARY = "hf_TokenCanary0123456789"

BAD_TOKENS = [
    ("inner newline", CANARY + "\nX-Injected: 1", "line break"),
    ("carriage return", CANARY + "\r" + CANARY, "line break"),
    ("escape", CANARY + "\x1b[2J", "control character (U+001B)"),
    ("DEL", CANARY + "\x7f" + CANARY, "control character (U+007F)"),
    ("C1 control", CANARY + "\x85" + CANARY, "control character (U+0085)"),
    ("latin-1 letter", CANARY + "\u00e9", "non-ASCII character (U+00E9)"),
    ("line separator", CANARY + "\u2028" + CANARY, "non-ASCII character (U+2028)"),
]


@pytest.mark.parametrize("value,needle", [c[1:] for c in BAD_TOKENS], ids=[c[0] for c in BAD_TOKENS])
def test_bad_token_is_a_config_error_naming_the_variable(value: str, needle: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QF_TOKEN_UNDER_TEST", value)
    with pytest.raises(ConfigError) as ei:
        read_token("QF_TOKEN_UNDER_TEST")
    err = ei.value
    assert "$QF_TOKEN_UNDER_TEST" in err.message and needle in err.message
    assert CANARY not in str(err.to_dict())


@pytest.mark.parametrize("value,want", [(CANARY, CANARY), (f"  {CANARY}\n", CANARY), ("", None), (" \n", None)])
def test_good_tokens_are_read(value: str, want: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QF_TOKEN_UNDER_TEST", value)
    assert read_token("QF_TOKEN_UNDER_TEST") == want


@pytest.mark.parametrize("debug", [(), ("--debug",)])
def test_token_with_a_newline_never_reaches_a_header(debug: tuple[str, ...], cli, store, sharded_repo,
                                                     tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with HubServer(store) as hub:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(f"sources:\n  - name: private\n    kind: hf\n    endpoint: {hub.url}\n"
                       "    token_env: QF_PRIVATE_TOKEN\n")
        bad = CANARY + "\nX-Injected: yes"
        runs = [cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "c", "--no-smoke", *debug,
                    env={"QF_PRIVATE_TOKEN": bad}),
                cli("pull", QWEN3_VL_8B, "--cache-dir", "c", "--no-smoke", *debug,
                    env={"HF_ENDPOINT": hub.url, "HF_TOKEN": bad}),
                cli("mirrors", "--config", str(cfg), *debug, env={"QF_PRIVATE_TOKEN": bad}),
                # a bad token on the first source stops the pull; the second source is not tried instead
                cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "c", "--no-smoke", *debug,
                    env={"HF_ENDPOINT": hub.url, "HF_TOKEN": bad})]
        assert not hub.log
    for r, var in zip(runs, ("QF_PRIVATE_TOKEN", "HF_TOKEN", "QF_PRIVATE_TOKEN", "HF_TOKEN")):
        assert r.exit_code == 2, r.stderr
        assert f"${var} contains a line break" in r.stderr
        assert CANARY not in r.stdout + r.stderr and "Injected" not in r.stdout + r.stderr


@pytest.mark.parametrize("debug", [(), ("--debug",)])
@pytest.mark.parametrize("var,value", [("HF_ENDPOINT", "ftp://alice:s3cretPW@mirror.example/hf"),
                                       ("HF_ENDPOINT", "http://alice:s3cretPW@mirror.example:99999"),
                                       ("MODELSCOPE_ENDPOINT", "https://alice:s3cretPW@ms.example/x/y")])
def test_endpoint_errors_mask_credentials(var: str, value: str, debug: tuple[str, ...], cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("mirrors", *debug, env={var: value})
    assert r.exit_code == 2, r.stderr
    assert var in r.stderr and "***@" in r.stderr
    assert "s3cretPW" not in r.stdout + r.stderr and "alice" not in r.stdout + r.stderr


def test_mask_url() -> None:
    assert mask_url("https://u:p@host:8443/x?y=1") == "https://***@host:8443/x?y=1"
    assert mask_url("https://host/x") == "https://host/x"
    assert mask_url("http://u:p@host:99999") == "http://***@host:99999"


def test_scrub_masks_secret_values_and_url_credentials() -> None:
    env = {"HF_TOKEN": CANARY, "QF_PRIVATE_TOKEN": "line1\nline2-secret", "HOME": "/root", "SHORT_TOKEN": "ab"}
    text = (f"Invalid header value b'Bearer {CANARY}'\nproxy http://bob:hunter22@proxy:3128 failed\n"
            "value b'line1\\nline2-secret' and line2-secret and /root and ab")
    out = scrub(text, env)
    assert CANARY not in out and "hunter22" not in out and "line2-secret" not in out
    assert "http://***@proxy:3128" in out and "/root" in out and " ab" in out


def test_builtin_config_with_a_bad_hf_token_fails_when_the_token_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", CANARY + "\n" + CANARY)
    cfg = load_config()  # loading names the variable only; the value is read (and checked) when used
    with pytest.raises(ConfigError, match=r"\$HF_TOKEN"):
        cfg.get("huggingface").token()
