"""Keeping secrets out of everything qwen-fetch prints (pure, apart from reading the environment).

Errors, notes, JSON documents and ``--debug`` tracebacks pass through :func:`redact`
before they are shown.  It hides the values of every token this process has read
(:func:`remember`), of environment variables whose names say they hold one
(``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY`` ...), the password part of URLs, and
``Bearer`` / ``m_session_id`` credentials, in the forms an exception message
would show them in (as is, ``repr``-escaped, JSON-escaped, line by line).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MASK = "***"
MIN_SECRET = 6  # shorter values would mask ordinary words; no real token is this short
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIAL", re.I)
_NOT_SECRET_NAME = re.compile(r"_(PATH|FILE|DIR)$", re.I)  # HF_TOKEN_PATH names a file, not a token
_PATTERNS = (
    (re.compile(r"(?i)\b(bearer)(\s+)[^\s'\",;]+"), rf"\1\2{MASK}"),
    (re.compile(r"(?i)\b(m_session_id=)[^\s'\",;]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@"), rf"\1{MASK}@"),  # scheme://user:password@host
)

_remembered: set[str] = set()
_lock = threading.Lock()


def remember(value: str | None) -> None:
    """Hide ``value`` from every later message (called where a token is read)."""
    if value and len(value) >= MIN_SECRET:
        with _lock:
            _remembered.add(value)


def secrets_in(environ: Mapping[str, str]) -> list[str]:
    """Values of the variables whose names mark them as credentials."""
    return [v for k, v in environ.items()
            if _SECRET_NAME.search(k) and not _NOT_SECRET_NAME.search(k) and len(v.strip()) >= MIN_SECRET]


def _variants(secret: str) -> Iterable[str]:
    """The ways a secret can appear in a message: raw, stripped, escaped as repr/JSON, per line."""
    forms = {secret, secret.strip(), secret.encode("unicode_escape").decode("ascii"),
             json.dumps(secret)[1:-1], repr(secret)[1:-1]}
    forms.update(part for part in re.split(r"[\r\n]+", secret))
    return (f for f in forms if len(f) >= MIN_SECRET)


def _forms(extra: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """Every form of every known secret, longest first: a token that contains another must not be left
    half-shown."""
    with _lock:
        secrets = set(_remembered)
    secrets.update(secrets_in(os.environ if environ is None else environ))
    secrets.update(extra)
    return sorted({f for s in secrets for f in _variants(s)}, key=len, reverse=True)


def _apply(text: str, forms: Sequence[str]) -> str:
    for form in forms:
        text = text.replace(form, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact(text: str, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every known secret replaced by ``***`` (``environ``: the process's by default)."""
    return _apply(text, _forms(extra, environ))


def redact_obj(obj: Any, forms: Sequence[str] | None = None) -> Any:
    """A JSON-able value with :func:`redact` applied to every string in it (keys included).

    The secrets are gathered once for the whole value, not per string: a pull's report names
    every file, and the environment was scanned for each of them.
    """
    if forms is None:
        forms = _forms()
    if isinstance(obj, str):
        return _apply(obj, forms)
    if isinstance(obj, dict):
        return {redact_obj(k, forms): redact_obj(v, forms) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v, forms) for v in obj]
    return obj


def scrub(text: str, environ: Mapping[str, str] | None = None, names: Iterable[str] = ()) -> str:
    """:func:`redact`, also masking the values of the variables ``names`` (say, a mirrors.yaml's token_env)."""
    env = os.environ if environ is None else environ
    return redact(text, extra=[env.get(n, "") for n in names], environ=env)
