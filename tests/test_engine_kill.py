"""SIGKILL a download mid-way (a real process, a rate-limited server), rerun, check the resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwen_fetch.core.progress import NullProgress
from qwen_fetch.net.engine import fetch_all
from qwen_fetch.net.jobs import FetchJob
from qwen_fetch.net.partstate import BadState, load_state, state_path
from tests.support.hub import Faults, HubServer
from tests.test_engine_support import FAST, make_jobs, make_repo, options

ROOT = Path(__file__).resolve().parent.parent
FILES = {"model-00001-of-00002.safetensors": 3_000_000, "model-00002-of-00002.safetensors": 2_000_000,
         "config.json": 2_000}

# The child: rebuild the same jobs from argv and fetch them with the test options.
DRIVER = """
import json, sys
from pathlib import Path
from tests.test_engine_support import jobs_for, options
from qwen_fetch.net.engine import fetch_all
from qwen_fetch.cli.progress import NullProgress
spec = json.loads(sys.argv[1])
jobs = jobs_for(Path(spec["cache"]), spec["commit"], spec["pins"], [("hub", spec["url"])])
fetch_all(jobs, options(connections=2, min_split=1 << 40), NullProgress())
print("finished")
"""


def _done_blocks(job: FetchJob) -> int:
    try:
        state = load_state(state_path(job.partial), size=job.size, sha256=job.sha256, block_size=FAST.block_size)
    except BadState:
        return 0
    return state.done_blocks if state else 0


@pytest.mark.timeout(120)
def test_sigkill_mid_download_then_rerun_resumes(tmp_path: Path) -> None:
    import hashlib

    store, commit, data = make_repo(tmp_path / "repo", FILES, seed=7)
    jobs = make_jobs(tmp_path / "cache", commit, data, [("hub", "http://unused")])
    first = next(j for j in jobs if j.path.startswith("model-00001"))
    with HubServer(store, Faults(rate=1_000_000)) as hub:  # ~2 MB/s with two connections: 3 s in all
        spec = {"cache": str(tmp_path / "cache"), "commit": commit, "url": hub.url,
                "pins": {p: (len(b), hashlib.sha256(b).hexdigest()) for p, b in data.items()}}
        child = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(spec)], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while _done_blocks(first) < 8 and time.monotonic() < deadline:  # >= 512 kB recorded
                assert child.poll() is None, child.communicate()
                time.sleep(0.05)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(10)
        assert child.returncode == -signal.SIGKILL
        assert hub.wait_idle()  # the server has noticed: nothing more is counted for the dead process
        sent_before = hub.total_bytes()
        assert sent_before < sum(FILES.values())  # it really was mid-way
        assert not first.dest.exists() and first.partial.exists()

        hub.faults.rate = None
        hub.reset_stats()
        jobs = make_jobs(tmp_path / "cache", commit, data, [("hub", hub.url)])
        out = {o.path: o for o in fetch_all(jobs, options(min_split=1 << 40), NullProgress())}
        resumed = sum(o.resumed_bytes for o in out.values())
        assert resumed > 0
        # Only the missing bytes travel again; the bytes lost to the kill are the blocks in flight.
        fetched = sum(FILES[p] for p, o in out.items() if not o.reused)
        assert hub.total_bytes() == fetched - resumed
        assert sent_before - resumed <= 2 * FAST.block_size + 2 * 256 * 1024  # in-flight blocks + socket reads
        for j in jobs:
            assert j.dest.read_bytes() == data[j.path]
            assert not j.partial.exists() and not state_path(j.partial).exists()
