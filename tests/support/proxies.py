"""Real proxies on 127.0.0.1 for tests and benchmarks: tinyproxy, squid, pproxy (SOCKS5), mitmproxy.

Each is started with its own configuration in a scratch directory and logs
there, so a test can prove what went through it.  :func:`missing` says why one
cannot be started here (its binary is absent), for ``pytest.skip``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

MITMDUMP_ENV = "QWEN_FETCH_TEST_MITMDUMP"  # overrides where mitmdump lives
MITMDUMP_DEFAULT = "/opt/mitm/bin/mitmdump"


def free_port() -> int:
    """A port free right now (tinyproxy and squid cannot listen on port 0 and report it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mitmdump_path() -> str | None:
    path = os.environ.get(MITMDUMP_ENV) or MITMDUMP_DEFAULT
    if Path(path).is_file():
        return path
    return shutil.which("mitmdump")


def missing(kind: str) -> str | None:
    """None when ``kind`` can run here, else why not."""
    if kind == "tinyproxy" and not shutil.which("tinyproxy"):
        return "tinyproxy is not installed (apt-get install tinyproxy)"
    if kind == "squid" and not shutil.which("squid"):
        return "squid is not installed (apt-get install squid)"
    if kind == "pproxy":
        try:
            import pproxy  # noqa: F401
        except ImportError:
            return "pproxy is not installed (pip install pproxy)"
    if kind == "mitmproxy" and mitmdump_path() is None:
        return f"mitmdump not found at {MITMDUMP_DEFAULT} or ${MITMDUMP_ENV} (see .ci/run)"
    return None


class Proxy:
    """A proxy process; ``url`` to reach it, ``log_text()`` for what it logged."""

    def __init__(self, argv: list[str], port: int, log: Path, workdir: Path, *, scheme: str = "http",
                 credentials: str | None = None, stdout_log: bool = False) -> None:
        self.port = port
        self.log = log
        self.scheme = scheme
        self.credentials = credentials
        out_path = log if stdout_log else workdir / "proxy.out"
        with open(out_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                tail = out_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{argv[0]} exited with {self.proc.returncode}: {tail}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{argv[0]} did not start listening on {port}") from None
                time.sleep(0.1)

    @property
    def url(self) -> str:
        cred = f"{self.credentials}@" if self.credentials else ""
        return f"{self.scheme}://{cred}127.0.0.1:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tinyproxy(workdir: Path, *, user: str | None = None, password: str | None = None,
              max_clients: int = 128) -> Proxy:
    """An HTTP proxy (CONNECT and absolute-form); its log lists every request line it relayed."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "tinyproxy.log"
    conf = [f"Port {port}", "Listen 127.0.0.1", "Timeout 600", f'LogFile "{log}"', "LogLevel Info",
            f"MaxClients {max_clients}", "Allow 127.0.0.1", "DisableViaHeader Yes"]
    if user is not None:
        conf.append(f"BasicAuth {user} {password}")
    (workdir / "tinyproxy.conf").write_text("\n".join(conf) + "\n")
    cred = f"{user}:{password}" if user is not None else None
    return Proxy(["tinyproxy", "-d", "-c", str(workdir / "tinyproxy.conf")], port, log, workdir, credentials=cred)


def squid(workdir: Path) -> Proxy:
    """A caching proxy configured as a plain CONNECT relay (no cache), for throughput benchmarks."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "access.log"
    if os.geteuid() == 0:
        os.chmod(workdir, 0o777)
    conf = [f"http_port 127.0.0.1:{port}", "acl localhost_src src 127.0.0.1/32", "acl SSL_ports port 1-65535",
            "acl CONNECT method CONNECT", "http_access allow localhost_src", "http_access deny all",
            "cache deny all", "cache_mem 8 MB", f"access_log stdio:{log}", f"cache_log {workdir}/cache.log",
            f"pid_filename {workdir}/squid.pid", "coredump_dir none", "shutdown_lifetime 0 seconds",
            "max_filedescriptors 4096", "workers 1", "via off", "forwarded_for delete"]
    if os.geteuid() == 0:
        conf += ["cache_effective_user proxy"]
    (workdir / "squid.conf").write_text("\n".join(conf) + "\n")
    return Proxy(["squid", "-N", "-f", str(workdir / "squid.conf")], port, log, workdir)


def pproxy(workdir: Path, *, user: str | None = None, password: str | None = None) -> Proxy:
    """A SOCKS5 proxy; with ``-v`` it logs ``socks5 CLIENT -> HOST:PORT`` for each connection."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    listen = f"socks5://127.0.0.1:{port}" + (f"#{user}:{password}" if user is not None else "")
    cred = f"{user}:{password}" if user is not None else None
    return Proxy([sys.executable, "-m", "pproxy", "-l", listen, "-v"], port, workdir / "pproxy.log", workdir,
                 scheme="socks5", credentials=cred, stdout_log=True)


def mitmdump(workdir: Path, *, upstream_ca: Path) -> Proxy:
    """An intercepting proxy with its own CA (``workdir/conf/mitmproxy-ca-cert.pem``); it verifies the
    upstream against ``upstream_ca`` and logs each request it relays."""
    exe = mitmdump_path()
    if exe is None:
        raise RuntimeError(missing("mitmproxy") or "mitmdump missing")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [exe, "--listen-host", "127.0.0.1", "--listen-port", str(port), "--set", f"confdir={workdir / 'conf'}",
            "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}", "--set", "flow_detail=1"]
    return Proxy(argv, port, workdir / "mitmdump.log", workdir, stdout_log=True)


def mitm_ca(proxy: Proxy) -> Path:
    return proxy.log.parent / "conf" / "mitmproxy-ca-cert.pem"
