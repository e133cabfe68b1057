"""Sources from ``mirrors.yaml``: lookup order, validation with line numbers."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from qwen_fetch.core.errors import ConfigError, Ref, UsageError
from qwen_fetch.core.proxy import ProxyParseError, ProxyPolicy, parse_proxy
from qwen_fetch.core.redact import remember
from qwen_fetch.core.revisions import revision_problem
from qwen_fetch.core.yamlio import LineMap, line_of, load_yaml
from qwen_fetch.sources.registry import KIND_NAMES as KINDS
from qwen_fetch.sources.registry import source_kind

ENV_SOURCE = "env"
# The official client: MODELSCOPE_ENDPOINT wins over the older MODELSCOPE_DOMAIN.
MODELSCOPE_ENDPOINT_ENVS = ("MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN")
BUILTIN = "<built-in default>"
ENV_ONLY = "$HF_ENDPOINT (no mirrors.yaml: built-in public hubs not used)"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ModelMap:
    """Rewrite a model id prefix for one source (``Qwen/`` → ``qwen/``)."""

    prefix: str
    to: str

    def apply(self, model_id: str) -> str | None:
        if model_id.startswith(self.prefix):
            return self.to + model_id[len(self.prefix):]
        return None


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    endpoint: str
    priority: int = 50
    token_env: str | None = None
    model_map: tuple[ModelMap, ...] = ()
    revision: str | None = None  # default branch on this source (modelscope: master)
    optional_files: tuple[str, ...] = ()  # globs a source may add or change (ModelScope extras)
    endpoint_env: str | None = None  # the environment variable that overrode ``endpoint``, if any
    s3_endpoint_url: str | None = None  # kind: s3 on MinIO/Ceph/OSS (else AWS_ENDPOINT_URL or AWS)
    proxy: ProxyPolicy | None = None  # `proxy:` (a URL, or none = direct); None: the environment decides
    ca_bundle: str | None = None  # `ca_bundle:`: an absolute path to a PEM file or a certificate directory

    def map_model(self, model_id: str) -> str:
        for m in self.model_map:
            out = m.apply(model_id)
            if out is not None:
                return out
        return model_id

    def token(self) -> str | None:
        """The value of ``token_env`` (surrounding whitespace dropped), checked: see :func:`read_token`."""
        if not self.token_env:
            return None
        return read_token(self.token_env)


@dataclass(frozen=True)
class Config:
    sources: tuple[SourceConfig, ...]
    origin: str  # the file it came from, or BUILTIN
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def ordered(self) -> tuple[SourceConfig, ...]:
        """Sources by priority (stable for ties: file order)."""
        return tuple(sorted(self.sources, key=lambda s: s.priority))

    def get(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        names = ", ".join(s.name for s in self.ordered())
        raise UsageError(f"unknown source {name!r}", hint=f"configured sources ({self.origin}): {names}")

    def kind_of(self, name: str) -> str | None:
        """The kind of the source named ``name``; None when no such source is configured."""
        return next((s.kind for s in self.sources if s.name == name), None)


# Keys every kind accepts; a kind adds its own (``SourceKind.keys``).
_SOURCE_KEYS = {"name", "kind", "endpoint", "priority", "token_env", "model_map", "revision", "optional_files",
                "proxy", "ca_bundle"}


def read_token(var: str) -> str | None:
    """A token from the environment, or None when unset or blank.

    A value with a control character (a pasted newline) or any non-ASCII
    character cannot be sent in a header (the HTTP client encodes header values
    as ASCII): it is refused here, naming the variable and never showing the
    value, instead of failing later inside the HTTP client with the header
    (token included) in the exception.
    """
    value = os.environ.get(var, "").strip()
    if not value:
        return None
    remember(value)  # whatever fails later, no message shows it
    for i, ch in enumerate(value):
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            what = "a line break" if ch in "\r\n" else f"a control character (U+{code:04X})"
        elif code > 0x7F:
            what = f"a non-ASCII character (U+{code:04X})"
        else:
            continue
        raise ConfigError(f"${var} contains {what} at position {i + 1}; it cannot be sent as a token",
                          hint=f"set {var} to the token alone, e.g. export {var}=\"$(tr -d '\\r\\n' < token-file)\"",
                          reference=Ref.BAD_TOKEN)
    return value


def mask_url(url: str) -> str:
    """A URL for messages and display: any ``user:password@`` replaced by ``***@``."""
    parts = urlsplit(url)
    try:
        has_userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        has_userinfo = "@" in parts.netloc
    if not has_userinfo:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def _err(where: str, lines: LineMap, path: tuple[object, ...], msg: str) -> ConfigError:
    line = line_of(lines, path)
    loc = f"{where}:{line}" if line else where
    return ConfigError(f"{loc}: {msg}", hint="see the mirrors.yaml format in README.md")


def _parse_source(obj: Any, i: int, where: str, lines: LineMap) -> SourceConfig:
    path: tuple[object, ...] = ("sources", i)
    if not isinstance(obj, dict):
        raise _err(where, lines, path, "each source must be a mapping with name, kind and endpoint")
    for k in ("name", "kind", "endpoint"):
        if k not in obj:
            raise _err(where, lines, path, f"source is missing {k!r}")
    name = obj["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _err(where, lines, path + ("name",), f"bad source name {name!r} (letters, digits, '-', '_', '.')")
    kind = obj["kind"]
    if kind not in KINDS:
        raise _err(where, lines, path + ("kind",), f"unknown kind {kind!r} (one of: {', '.join(KINDS)})")
    endpoint = obj["endpoint"]
    if not isinstance(endpoint, str):
        raise _err(where, lines, path + ("endpoint",), "endpoint must be a string")
    endpoint = endpoint.rstrip("/")
    spec = source_kind(kind, name)
    allowed = _SOURCE_KEYS | spec.keys
    for k in obj:
        if k not in allowed:
            raise _err(where, lines, path + (k,), f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
    priority = obj.get("priority", 50)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise _err(where, lines, path + ("priority",), f"priority must be an integer, got {priority!r}")
    token_env = obj.get("token_env")
    if token_env is not None and (not isinstance(token_env, str) or not _ENV_RE.match(token_env)):
        raise _err(where, lines, path + ("token_env",), f"token_env must name an environment variable, got {token_env!r}")
    mm_raw = obj.get("model_map") or {}
    if not isinstance(mm_raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mm_raw.items()):
        raise _err(where, lines, path + ("model_map",), "model_map must map id prefixes to prefixes, e.g. {'Qwen/': 'qwen/'}")
    revision = obj.get("revision")
    if revision is not None and (not isinstance(revision, str) or revision_problem(revision) is not None):
        raise _err(where, lines, path + ("revision",),
                   f"revision must be a branch or tag name ({revision_problem(revision)}), got {revision!r}")
    opt = obj.get("optional_files") or []
    if not isinstance(opt, list) or not all(isinstance(g, str) and g for g in opt):
        raise _err(where, lines, path + ("optional_files",), "optional_files must be a list of globs")
    proxy = _parse_proxy_key(obj.get("proxy"), name, where, lines, path + ("proxy",))
    ca_bundle = _parse_ca_bundle(obj.get("ca_bundle"), where, lines, path + ("ca_bundle",))
    common = SourceConfig(
        name=name, kind=kind, endpoint=endpoint, priority=priority, token_env=token_env,
        model_map=tuple(ModelMap(k, v) for k, v in sorted(mm_raw.items(), key=lambda kv: -len(kv[0]))),
        revision=revision, optional_files=tuple(opt), proxy=proxy, ca_bundle=ca_bundle,
    )

    def fail(key: str, msg: str) -> ConfigError:
        return _err(where, lines, path + (key,), msg)

    return spec.configure(obj, common, fail)  # the kind's own keys and defaults


def http_endpoint(endpoint: str, fail: Callable[[str, str], ConfigError]) -> str:
    """``endpoint`` if it is an http(s) URL of a host (what the hub kinds talk to), else ``fail``'s error."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail("endpoint", f"endpoint {endpoint!r} must be an http(s) URL")
    return endpoint


def _parse_proxy_key(value: Any, name: str, where: str, lines: LineMap,
                     path: tuple[object, ...]) -> ProxyPolicy | None:
    """``proxy: none`` -> direct; ``proxy: URL`` -> that proxy for every request of the source."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _err(where, lines, path, "proxy must be a proxy URL (http://, socks5://, socks5h://) or none")
    if value.strip().lower() == "none":
        return ProxyPolicy.direct(origin=f"proxy: none of source {name!r}")
    try:
        url = parse_proxy(value, origin=f"proxy: of source {name!r}")
    except ProxyParseError as exc:  # its message never repeats the value: it may hold a password
        raise _err(where, lines, path, f"unusable proxy: {exc}") from None
    return ProxyPolicy.fixed(url)


def _parse_ca_bundle(value: Any, where: str, lines: LineMap, path: tuple[object, ...]) -> str | None:
    """An existing PEM file or certificate directory; relative paths are relative to the config file."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _err(where, lines, path, "ca_bundle must be the path of a PEM file of CA certificates")
    p = Path(value.strip()).expanduser()
    if not p.is_absolute() and where != BUILTIN:
        p = Path(where).resolve().parent / p
    if not p.exists():
        raise _err(where, lines, path, f"ca_bundle {str(p)!r} does not exist")
    return str(p)


def parse_config(text: str, where: str) -> Config:
    data, lines = load_yaml(text, where)
    if not isinstance(data, dict):
        raise _err(where, lines, (), "expected a mapping with a 'sources' list")
    for k in data:
        if k != "sources":
            raise _err(where, lines, (k,), f"unknown key {k!r} (allowed: sources)")
    raw = data.get("sources")
    if not isinstance(raw, list) or not raw:
        raise _err(where, lines, ("sources",), "'sources' must be a non-empty list")
    sources = [_parse_source(s, i, where, lines) for i, s in enumerate(raw)]
    seen: set[str] = set()
    for i, s in enumerate(sources):
        if s.name in seen:
            raise _err(where, lines, ("sources", i, "name"), f"duplicate source name {s.name!r}")
        seen.add(s.name)
    return Config(sources=tuple(sources), origin=where)


def builtin_text() -> str:
    return resources.files("qwen_fetch").joinpath("default_mirrors.yaml").read_text(encoding="utf-8")


def find_config_file(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist", hint="check --config")
        return explicit
    env = os.environ.get("QWEN_FETCH_CONFIG")
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"$QWEN_FETCH_CONFIG points at {p}, which does not exist", hint="unset it or fix the path")
        return p
    for p in (Path("mirrors.yaml"), Path.home() / ".config" / "qwen-fetch" / "mirrors.yaml"):
        if p.is_file():
            return p
    return None


def load_config(explicit: Path | None = None) -> Config:
    """Load sources in the documented lookup order; add ``HF_ENDPOINT`` as ``env``.

    With ``HF_ENDPOINT`` set and no mirrors.yaml of the user's, ``env`` is the
    only source: the built-in public hubs are not added behind it, so a machine
    pointed at an internal mirror never contacts the internet.  A ``kind:
    modelscope`` source is kept when ``MODELSCOPE_ENDPOINT`` / ``MODELSCOPE_DOMAIN``
    points it somewhere: that too is the user's own choice.
    """
    path = find_config_file(explicit)
    if path is None and _env_endpoint():
        builtin = with_modelscope_endpoint(parse_config(builtin_text(), BUILTIN))
        kept = tuple(s for s in builtin.sources if s.endpoint_env is not None)
        return with_env_endpoint(Config(sources=kept, origin=ENV_ONLY))
    if path is None:
        cfg = parse_config(builtin_text(), BUILTIN)
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", hint="check the file") from None
        cfg = parse_config(text, str(path))
    return with_modelscope_endpoint(with_env_endpoint(cfg))


def _env_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")


def with_env_endpoint(cfg: Config) -> Config:
    endpoint = _env_endpoint()
    if not endpoint:
        return cfg
    try:
        parts = urlsplit(endpoint)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a port that is not a number from 0 to 65535
        ok = False
    if not ok:
        raise ConfigError(f"HF_ENDPOINT={mask_url(endpoint)!r} is not a valid http(s) URL",
                          hint="e.g. export HF_ENDPOINT=https://hf-mirror.com")
    lowest = min((s.priority for s in cfg.sources), default=0)
    env = SourceConfig(name=ENV_SOURCE, kind="hf", endpoint=endpoint, priority=lowest - 1, token_env="HF_TOKEN")
    rest = tuple(s for s in cfg.sources if s.name != ENV_SOURCE)
    return Config(sources=(env,) + rest, origin=cfg.origin)


def with_modelscope_endpoint(cfg: Config) -> Config:
    """``MODELSCOPE_ENDPOINT`` / ``MODELSCOPE_DOMAIN`` override every ``kind: modelscope`` endpoint.

    Same precedence and scheme rule as the official client: a bare host name
    (``www.modelscope.ai``) means ``https://``; an explicit ``http://`` is kept
    (loopback test servers, internal mirrors).
    """
    for var in MODELSCOPE_ENDPOINT_ENVS:
        raw = os.environ.get(var, "").strip()
        if raw:
            break
    else:
        return cfg
    endpoint = raw if raw.lower().startswith(("http://", "https://")) else f"https://{raw}"
    parts = urlsplit(endpoint)
    endpoint = endpoint.rstrip("/")
    if not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"{var}={mask_url(raw)!r} is not a host name or an http(s) URL of a host",
                          hint=f"e.g. export {var}=www.modelscope.cn")
    sources = tuple(replace(s, endpoint=endpoint, endpoint_env=var) if s.kind == "modelscope" else s
                    for s in cfg.sources)
    return Config(sources=sources, origin=cfg.origin)


def default_cache_dir() -> Path:
    """The Hugging Face hub cache, honouring HF_HUB_CACHE and HF_HOME like huggingface_hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"
