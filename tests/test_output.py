"""What the CLI prints: hostile text shown as text, --debug adding only a traceback, no secret shown."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qwen_fetch.cli.progress import RichProgress
from qwen_fetch.core.redact import redact, remember
from tests.conftest import write_mirrors
from tests.support.faultkit import _file
from tests.support.hub import HubServer
from tests.support.repo import RepoStore

MODEL = "Org/tiny"
MARKUP = "../[/bold]x.txt"


@pytest.fixture
def tiny(store: RepoStore) -> str:
    return store.add_commit(MODEL, {"config.json": b'{"a": 1}\n', "w.safetensors": b"A" * 5000})


def _pull(cli, mirrors: Path, *extra: str, model: str = MODEL, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return cli("pull", model, "--config", str(mirrors), "--cache-dir", "cache", "--lock", "qwen-fetch.lock",
               "--no-smoke", *extra, env=env)


@pytest.mark.parametrize("json_mode", [False, True])
def test_markup_in_a_listed_path_is_shown_not_interpreted(cli, tiny, hub: HubServer, mirrors: Path,  # type: ignore[no-untyped-def]
                                                          json_mode: bool) -> None:
    hub.faults.listing[MODEL] = [_file(MARKUP)]
    r = _pull(cli, mirrors, *(["--json"] if json_mode else []))
    assert r.exit_code == 3, r.stderr
    assert "Traceback" not in r.stderr and "MarkupError" not in r.stderr
    if not json_mode:
        assert f"refused file path {MARKUP!r}" in r.stderr
    else:
        doc = json.loads(r.stdout)  # one document, nothing after it
        assert doc["error"] == "unsafe-path" and MARKUP in doc["message"]


def test_markup_in_the_model_id_is_shown_not_interpreted(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("pull", "Org/x[/bold]", "--config", str(write_mirrors(tmp_path / "m.yaml", ("a", "http://127.0.0.1:9"))),
            "--no-smoke")
    assert r.exit_code == 2, r.stderr
    assert "invalid model id 'Org/x[/bold]'" in r.stderr and "Traceback" not in r.stderr


def test_emoji_codes_and_package_extras_survive(cli, tiny, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    """`--smoke require` without a GPU: the hint names the extra to install, brackets and all."""
    r = cli("pull", MODEL, "--config", str(mirrors), "--cache-dir", "cache", "--smoke", "require",
            "--device", "cuda")
    assert r.exit_code == 5, r.stderr
    assert "pip install 'qwen-fetch[smoke]'" in r.stderr


def test_help_shows_the_smoke_extra(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("pull", "--help", env={"COLUMNS": "400"})
    assert r.exit_code == 0
    assert "when a GPU and the [smoke] extra are present" in r.stdout, r.stdout


def test_progress_notes_and_description_are_text(capsys: pytest.CaptureFixture[str]) -> None:
    """The terminal progress display: a model id and a hub's note printed as they are."""
    p = RichProgress("pull Org/x[/bold]")
    p.begin(10, 1)
    p.note(f"{MARKUP}: :smile: retrying")
    p.end()
    err = capsys.readouterr().err
    assert f"{MARKUP}: :smile: retrying" in err


def test_debug_adds_a_traceback_and_keeps_the_exit_code(cli, tiny, hub: HubServer, mirrors: Path) -> None:  # type: ignore[no-untyped-def]
    plain = _pull(cli, mirrors, model="Nope/missing")
    debug = _pull(cli, mirrors, "--debug", model="Nope/missing")
    assert plain.exit_code == debug.exit_code == 4
    assert "Traceback" not in plain.stderr and "Traceback (most recent call last)" in debug.stderr
    error_line = next(ln for ln in plain.stderr.splitlines() if ln.startswith("error: "))
    assert error_line in debug.stderr.splitlines()
    as_json = _pull(cli, mirrors, "--debug", "--json", model="Nope/missing")
    assert as_json.exit_code == 4 and json.loads(as_json.stdout)["error"] == "not-found"


def test_debug_never_prints_a_token(cli, tiny, hub: HubServer) -> None:  # type: ignore[no-untyped-def]
    """A token with a newline makes httpx refuse the header and quote it; the traceback must not show it."""
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_CanaryFirstHalf\nCanarySecondHalf"}
    for extra in ((), ("--debug",), ("--debug", "--json")):
        r = cli("pull", MODEL, "--source", "env", "--cache-dir", "cache", "--no-smoke", *extra, env=env)
        assert r.exit_code != 0
        shown = r.stdout + r.stderr
        assert "CanaryFirstHalf" not in shown and "CanarySecondHalf" not in shown, shown
        if "--debug" in extra:
            assert "Traceback" in r.stderr


def test_redact_masks_every_form_of_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QF_TEST_API_TOKEN", "tok-123456\nsecond")
    monkeypatch.setenv("HF_TOKEN_PATH", "/home/me/token-file")  # a path, not a token
    remember("remembered-secret")
    text = ("b'Bearer tok-123456\\nsecond' / tok-123456 / \"tok-123456\\nsecond\" / https://user:pw@host:1/x "
            "/ m_session_id=abcdefgh; / remembered-secret / /home/me/token-file / Bearer")
    out = redact(text)
    for leak in ("tok-123456", "second", "user:pw", "abcdefgh", "remembered-secret"):
        assert leak not in out, out
    assert "https://***@host:1/x" in out and "/home/me/token-file" in out
    assert redact("no secrets here: main, v1.0") == "no secrets here: main, v1.0"
    assert os.environ["QF_TEST_API_TOKEN"]  # untouched
