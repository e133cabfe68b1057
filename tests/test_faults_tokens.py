"""Fault campaign, token hygiene: tokens go to their own endpoint and nowhere else.

With ``HF_TOKEN`` (the ``env`` source from ``HF_ENDPOINT``) and a private
source's ``token_env`` both set, every command's stdout/stderr (plain, --json,
failures, --debug tracebacks), the lockfile and every file the runs leave
anywhere under the test's tmp tree must contain neither token; a redirect to
another host (a CDN) never carries ``Authorization``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer

HF_TOKEN = "hf_QwenFetchCanary0123456789abcdef"
PRIVATE = "priv-QwenFetchCanary-9876543210"


def _grep_tree(root: Path, skip: Path, needles: tuple[str, ...]) -> list[str]:
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        if dirpath.startswith(str(skip)):
            continue
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                continue
            data = p.read_bytes()
            hits += [f"{p}: {n}" for n in needles if n.encode() in data]
    return hits


def test_tokens_never_leak_and_never_follow_a_redirect(cli, store, sharded_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with HubServer(store) as cdn_a, HubServer(store) as cdn_b, HubServer(store) as env_hub, \
            HubServer(store) as private_hub:
        env_hub.faults.redirect_base = cdn_a.url.replace("127.0.0.1", "localhost")  # another host name
        private_hub.faults.redirect_base = cdn_b.url  # same address, another port: another origin
        cfg = tmp_path / "mirrors.yaml"
        cfg.write_text(f"sources:\n  - name: private\n    kind: hf\n    endpoint: {private_hub.url}\n"
                       "    token_env: QF_PRIVATE_TOKEN\n    priority: 20\n")
        env = {"HF_TOKEN": HF_TOKEN, "QF_PRIVATE_TOKEN": PRIVATE, "HF_ENDPOINT": env_hub.url}
        common = ("--config", str(cfg))
        runs = [
            cli("mirrors", *common, "--probe", "--json", env=env),
            cli("mirrors", *common, env=env),
            cli("lock", QWEN3_VL_8B, *common, "--source", "private", "--json", env=env),
            cli("pull", QWEN3_VL_8B, *common, "--cache-dir", "cache", "--no-smoke", "--json", env=env),
            cli("pull", QWEN3_VL_8B, *common, "--cache-dir", "cache2", "--lock", "other.lock", "--no-smoke",
                "--source", "env", env=env),
            cli("verify", QWEN3_VL_8B, "--cache-dir", "cache", "--json", env=env),
            cli("verify", "--all", "--cache-dir", "cache", env=env),
            cli("gc", "--cache-dir", "cache", "--dry-run", "--json", env=env),
        ]
        assert [r.exit_code for r in runs] == [0] * len(runs), [(r.exit_code, r.stderr[-300:]) for r in runs]
        # failures print the source and the URL path: still no token, with or without --debug
        private_hub.faults.statuses["api"] = [(401, {})] * 4
        env_hub.faults.statuses["api"] = [(403, {})] * 4
        for extra in ((), ("--debug",)):
            r = cli("pull", "Qwen/Other", *common, "--cache-dir", "cache3", "--lock", "x.lock", "--no-smoke",
                    "--update", *extra, env=env)
            assert r.exit_code != 0
            runs.append(r)

        for hub, token in ((env_hub, HF_TOKEN), (private_hub, PRIVATE)):
            assert hub.log and all(e["headers"].get("Authorization") == f"Bearer {token}" for e in hub.log)
        resolves = [e for e in env_hub.log + private_hub.log if "/resolve/" in e["path"]]
        assert resolves, "files were fetched through the redirecting endpoints"
        for cdn in (cdn_a, cdn_b):
            assert cdn.log, "the redirects were followed"
            assert not [e for e in cdn.log if "Authorization" in e["headers"] or "authorization" in e["headers"]]
            assert not [e for e in cdn.log if HF_TOKEN in str(e) or PRIVATE in str(e)]

    needles = (HF_TOKEN, PRIVATE)
    output = "\n".join(r.stdout + r.stderr for r in runs)
    assert not [n for n in needles if n in output]
    assert Path("qwen-fetch.lock").exists()
    assert _grep_tree(tmp_path, tmp_path / "store", needles) == []
