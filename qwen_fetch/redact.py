"""Keep secrets out of what we print: URL credentials and the values of secret environment variables.

``--debug`` prints tracebacks, and an exception's text may quote a header, a
URL with ``user:password@`` or a configuration value.  :func:`scrub` is applied
to that text before it reaches the terminal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

# Environment variables whose values are secrets: HF_TOKEN, MODELSCOPE_API_TOKEN, AWS_SECRET_ACCESS_KEY, any
# token_env a mirrors.yaml names (by convention *_TOKEN), proxy passwords...
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|API_?KEY|ACCESS_KEY|SESSION", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]+@")
MIN_SECRET = 4  # shorter values ("1", "yes") would mask ordinary words


def secret_values(environ: Mapping[str, str] | None = None, names: Iterable[str] = ()) -> list[str]:
    """Values to mask: every variable named like a secret, plus ``names``; longest first."""
    env = os.environ if environ is None else environ
    wanted = set(names) | {k for k in env if _SECRET_NAME.search(k)}
    values: set[str] = set()
    for k in wanted:
        v = env.get(k, "")
        for piece in [v, v.strip(), *v.splitlines(), v.encode("unicode_escape").decode("ascii", "replace")]:
            piece = piece.strip()
            if len(piece) >= MIN_SECRET:
                values.add(piece)
    return sorted(values, key=len, reverse=True)


def scrub(text: str, environ: Mapping[str, str] | None = None, names: Iterable[str] = ()) -> str:
    """``text`` with URL credentials (``scheme://user:pass@``) and secret values replaced by ``***``."""
    text = _USERINFO.sub(lambda m: m.group("scheme") + "***@", text)
    for v in secret_values(environ, names):
        text = text.replace(v, "***")
    return text
