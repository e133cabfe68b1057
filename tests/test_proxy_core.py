"""The proxy policy as pure functions: NO_PROXY matching, proxy URLs, the environment, mirrors.yaml keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_fetch.core.errors import ConfigError
from qwen_fetch.core.proxy import ProxyParseError, ProxyPolicy, parse_no_proxy, parse_proxy
from qwen_fetch.sources.config import parse_config

NO_PROXY_CASES = [
    # (NO_PROXY, host, port, bypassed)
    ("", "example.com", 443, False),
    ("*", "anything.example", 443, True),
    ("example.com", "example.com", 443, True),
    ("example.com", "www.example.com", 443, True),
    ("example.com", "notexample.com", 443, False),
    (".example.com", "example.com", 443, True),
    (".example.com", "a.b.example.com", 443, True),
    ("*.example.com", "www.example.com", 443, True),
    ("EXAMPLE.com.", "www.Example.COM", 443, True),
    ("example.com:8443", "example.com", 8443, True),
    ("example.com:8443", "example.com", 443, False),
    ("a.test, b.test c.test", "c.test", 80, True),
    ("a.test,,b.test", "b.test", 80, True),
    ("10.0.0.0/8", "10.1.2.3", 443, True),
    ("10.0.0.0/8", "11.1.2.3", 443, False),
    ("10.0.0.0/8", "ten.example", 443, False),
    ("127.0.0.1", "127.0.0.1", 9000, True),
    ("127.0.0.1:9000", "127.0.0.1", 9001, False),
    ("::1", "::1", 443, True),
    ("[::1]:8080", "[::1]", 8080, True),
    ("fd00::/8", "fd12::5", 443, True),
    ("localhost", "127.0.0.1", 443, False),  # names and addresses are not resolved into each other
    ("http://intranet.example", "wiki.intranet.example", 80, True),
    ("", "localhost", 443, False),  # loopback is proxied unless listed, as in curl and httpx
]


@pytest.mark.parametrize(("value", "host", "port", "bypassed"), NO_PROXY_CASES)
def test_no_proxy(value: str, host: str, port: int, bypassed: bool) -> None:
    assert parse_no_proxy(value).matches(host, port) is bypassed


@pytest.mark.parametrize(("url", "scheme", "host", "port", "user", "password"), [
    ("http://proxy.example:3128", "http", "proxy.example", 3128, None, None),
    ("proxy.example:3128", "http", "proxy.example", 3128, None, None),
    ("http://proxy.example", "http", "proxy.example", 80, None, None),
    ("socks5://127.0.0.1", "socks5", "127.0.0.1", 1080, None, None),
    ("SOCKS5H://u:p@[::1]:9050/", "socks5h", "::1", 9050, "u", "p"),
    ("http://us%40er:p%3Ass@proxy:8080", "http", "proxy", 8080, "us@er", "p:ss"),
])
def test_parse_proxy(url: str, scheme: str, host: str, port: int, user: str | None, password: str | None) -> None:
    p = parse_proxy(url)
    assert (p.scheme, p.host, p.port, p.username, p.password) == (scheme, host, port, user, password)


@pytest.mark.parametrize(("url", "says"), [
    ("https://u:secret@proxy:443", "https:// proxies"),
    ("socks4://u:secret@proxy:1080", "unsupported proxy scheme"),
    ("http://u:secret@proxy:99999", "malformed"),
    ("http://u:secret@proxy:3128/path", "no path"),
    ("http://u:secret@:3128", "no host"),
])
def test_unusable_proxies_are_refused_without_echoing_them(url: str, says: str) -> None:
    with pytest.raises(ProxyParseError, match=says) as info:
        parse_proxy(url)
    assert "secret" not in str(info.value)


def test_credentials_never_in_str_or_repr() -> None:
    p = parse_proxy("http://alice:hunter2@proxy:3128", origin="HTTPS_PROXY")
    policy = ProxyPolicy.from_env({"HTTPS_PROXY": "http://alice:hunter2@proxy:3128"})
    for text in (str(p), repr(p), repr(policy), policy.describe(), repr(ProxyPolicy.fixed(p))):
        assert "hunter2" not in text and "alice" not in text, text
        assert "proxy:3128" in text
    assert p.basic_auth() == "Basic YWxpY2U6aHVudGVyMg=="


def test_environment_like_curl() -> None:
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "ALL_PROXY": "socks5h://all:3",
           "NO_PROXY": "internal.example"}
    p = ProxyPolicy.from_env(env)
    assert p.select("https", "huggingface.co", 443).host == "lower"  # lower case wins
    assert p.select("http", "huggingface.co", 80).host == "all"  # ALL_PROXY when HTTP_PROXY is unset
    assert p.select("https", "x.internal.example", 443) is None
    assert ProxyPolicy.from_env({}).select("https", "huggingface.co", 443) is None
    # httpoxy: a CGI request can set HTTP_PROXY through a header; it is ignored there
    assert ProxyPolicy.from_env({"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}).http is None
    with pytest.raises(ProxyParseError, match="^ALL_PROXY:"):
        ProxyPolicy.from_env({"ALL_PROXY": "gopher://x:1"})


def test_fixed_and_direct_policies_ignore_no_proxy() -> None:
    p = parse_proxy("socks5h://127.0.0.1:1080")
    fixed = ProxyPolicy.fixed(p)
    assert fixed.select("https", "localhost", 443) == p
    assert fixed.select("http", "cdn.example", 80) == p
    assert ProxyPolicy.direct().select("https", "huggingface.co", 443) is None


def _cfg(extra: str, kind: str = "hf", endpoint: str = "https://hub.example") -> str:
    return f"sources:\n  - name: one\n    kind: {kind}\n    endpoint: {endpoint}\n{extra}"


def test_mirrors_yaml_proxy_and_ca_bundle(tmp_path: Path) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("x")
    where = str(tmp_path / "mirrors.yaml")
    src = parse_config(_cfg("    proxy: socks5h://bob:pw@127.0.0.1:1080\n    ca_bundle: corp-ca.pem\n"), where).sources[0]
    assert src.proxy is not None and src.proxy.https is not None and src.proxy.https.scheme == "socks5h"
    assert src.ca_bundle == str(ca)  # relative to the config file
    assert "pw" not in repr(src) and "bob" not in repr(src)
    none = parse_config(_cfg("    proxy: none\n"), where).sources[0]
    assert none.proxy is not None and none.proxy.select("https", "hub.example", 443) is None
    assert parse_config(_cfg(""), where).sources[0].proxy is None  # the environment decides


@pytest.mark.parametrize(("extra", "line", "says"), [
    ("    proxy: ftp://u:secret@p:1\n", 5, "unsupported proxy scheme"),
    ("    proxy: https://u:secret@p:1\n", 5, "https:// proxies"),
    ("    proxy: 3128\n", 5, "proxy must be a proxy URL"),
    ("    priority: 1\n    ca_bundle: /nonexistent/ca.pem\n", 6, "does not exist"),
    ("    ca_bundle: ''\n", 5, "ca_bundle must be"),
])
def test_bad_keys_name_file_and_line(extra: str, line: int, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_cfg(extra), "mirrors.yaml")
    assert info.value.message.startswith(f"mirrors.yaml:{line}: ") and says in info.value.message
    assert "secret" not in info.value.message


def test_s3_sources_take_only_http_proxies() -> None:
    with pytest.raises(ConfigError, match="only http:// proxies"):
        parse_config(_cfg("    proxy: socks5://127.0.0.1:1080\n", kind="s3", endpoint="s3://bucket/x"), "m.yaml")
    src = parse_config(_cfg("    proxy: http://127.0.0.1:3128\n", kind="s3", endpoint="s3://bucket/x"), "m.yaml")
    assert src.sources[0].proxy is not None


def test_mirrors_shows_each_sources_route_without_credentials(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "mirrors.yaml"
    cfg.write_text("sources:\n"
                   "  - {name: corp, kind: hf, endpoint: 'https://models.corp.example'}\n"
                   "  - {name: public, kind: hf, endpoint: 'https://huggingface.co'}\n"
                   "  - {name: socks, kind: hf, endpoint: 'https://hf-mirror.com', proxy: 'socks5h://u:pw1@127.0.0.1:1080'}\n"
                   "  - {name: direct, kind: hf, endpoint: 'https://hf-mirror.com', proxy: none}\n")
    env = {"HTTPS_PROXY": "http://alice:hunter2@proxy.corp.example:3128", "NO_PROXY": ".corp.example"}
    r = cli("mirrors", "--config", str(cfg), "--json", env=env)
    assert r.exit_code == 0, r.stderr
    routes = {s["name"]: s["proxy"] for s in r.json()["sources"]}
    assert routes == {"corp": "direct (NO_PROXY)",
                      "public": "http://***@proxy.corp.example:3128 (from HTTPS_PROXY)",
                      "socks": "socks5h://***@127.0.0.1:1080 (from proxy: of source 'socks')",
                      "direct": "direct (proxy: none of source 'direct')"}
    table = cli("mirrors", "--config", str(cfg), env=env)
    for out in (r.stdout, table.stdout, table.stderr):
        assert "hunter2" not in out and "alice" not in out and "pw1" not in out
    assert "http://***@proxy.corp.example:3128" in table.stdout


def test_forward_proxy_credentials_stay_with_the_proxy_across_a_redirect() -> None:
    """Plain http through an http proxy: absolute-form requests carry Proxy-Authorization; a redirect to a
    host that NO_PROXY sends direct must not carry it there."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from qwen_fetch.net.http import make_client

    seen: dict[str, list[tuple[str, str | None]]] = {"proxy": [], "direct": []}

    def server(name: str, answer):  # type: ignore[no-untyped-def]
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                seen[name].append((self.path, self.headers.get("Proxy-Authorization")))
                status, headers, body = answer(self.path)
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    direct = server("direct", lambda path: (200, {}, b"final"))
    dport = direct.server_address[1]
    proxy = server("proxy", lambda path: (302, {"Location": f"http://localhost:{dport}/final"}, b""))
    try:
        policy = ProxyPolicy.from_env({"HTTP_PROXY": f"http://u:pw@127.0.0.1:{proxy.server_address[1]}",
                                       "NO_PROXY": "localhost"})
        with make_client(proxy=policy) as client:
            r = client.get("http://origin.example:8080/start?x=1")
        assert r.status_code == 200 and r.content == b"final"
        assert seen["proxy"] == [("http://origin.example:8080/start?x=1", "Basic dTpwdw==")]
        assert seen["direct"] == [("/final", None)]
    finally:
        proxy.shutdown()
        direct.shutdown()
