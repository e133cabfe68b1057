"""The README's recipes (docs/recipes/) run as written, against a loopback hub.

No CI service, docker engine or vLLM here, so each recipe's own shell steps are executed the way its runner
would: the workflow YAML is parsed and its ``run:``/``script:`` steps run in a fresh "runner" (its own HOME and
workspace) with the cache folder the recipe names carried over to a second runner; the Dockerfile's
instructions are interpreted stage by stage, each stage in its own folder standing in for its filesystem
(absolute paths of the image mapped into it), then the image's ENTRYPOINT runs.  Steps that install
qwen-fetch (``pip install``) are skipped: the package under test is already installed.  The hub is reached
through ``HF_ENDPOINT``, as a user behind a mirror would set it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import pytest
import yaml

from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer

RECIPES = Path(__file__).resolve().parent.parent / "docs" / "recipes"


def _qf_help(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "qwen_fetch", *args, "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def _has_path_command() -> bool:
    return _qf_help("path")[0] == 0


needs_path = pytest.mark.skipif(not _has_path_command(), reason="`qwen-fetch path` is not in this build yet")


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH entry with ``qwen-fetch`` for this interpreter (what `pip install qwen-fetch` puts on PATH)."""
    d = tmp_path / "bin"
    d.mkdir()
    exe = d / "qwen-fetch"
    exe.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m qwen_fetch \"$@\"\n")
    exe.chmod(0o755)
    return d


def _runner_env(bin_dir: Path, home: Path, **extra: str) -> dict[str, str]:
    """A CI runner's environment: nothing of the test process's HF settings, a fresh HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "QWEN_FETCH_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HOME=str(home), NO_PROXY="127.0.0.1,localhost",
               HF_HUB_DISABLE_TELEMETRY="1")
    env.update(extra)
    home.mkdir(parents=True, exist_ok=True)
    return env


@pytest.fixture
def committed_lock(tmp_path: Path, hub: HubServer, sharded_repo: str, bin_dir: Path) -> Path:
    """The lockfile a developer committed: `qwen-fetch lock MODEL` once, against the mirror."""
    dev = tmp_path / "dev"
    dev.mkdir()
    env = _runner_env(bin_dir, tmp_path / "dev-home", HF_ENDPOINT=hub.url)
    subprocess.run(["qwen-fetch", "lock", QWEN3_VL_8B], cwd=dev, env=env, check=True, capture_output=True,
                   timeout=120)
    return dev / "qwen-fetch.lock"


def _workspace(root: Path, lock: Path) -> Path:
    """A fresh checkout: the repository holds the lockfile."""
    root.mkdir(parents=True)
    shutil.copy2(lock, root / "qwen-fetch.lock")
    return root


def _run_shell(script: str, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # GitHub's `run:` default on Linux and GitLab's script runner both stop at the first failing command.
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def _is_install(script: str) -> bool:
    return "pip install" in script


def _snapshot(cache: Path, commit: str) -> Path:
    return cache / f"models--{QWEN3_VL_8B.replace('/', '--')}" / "snapshots" / commit


# -- GitHub Actions ---------------------------------------------------------------------------------------------

def _github_job() -> dict[str, Any]:
    doc = yaml.safe_load((RECIPES / "github-actions.yml").read_text())
    (job,) = doc["jobs"].values()
    return job


def _github_run(job: dict[str, Any], *, workspace: Path, env: dict[str, str]) -> list[str]:
    """Run every `run:` step of the job as the runner would (the `uses:` steps are the runner's business)."""
    ran = []
    full = {**env, **{k: str(v) for k, v in (job.get("env") or {}).items()}}
    for step in job["steps"]:
        script = step.get("run")
        if script is None or _is_install(script):
            continue
        proc = _run_shell(script, cwd=workspace, env={**full, **{k: str(v) for k, v in (step.get("env") or {}).items()}})
        assert proc.returncode == 0, f"step {step.get('name', script)!r} failed:\n{proc.stdout}\n{proc.stderr}"
        ran.append(script)
    return ran


def _github_cache_path(job: dict[str, Any], home: Path) -> Path:
    (cache_step,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache@")]
    key = cache_step["with"]["key"]
    assert "hashFiles('qwen-fetch.lock')" in key, "the cache must be keyed on the lockfile"
    path = str(cache_step["with"]["path"])
    return Path(path.replace("~", str(home), 1)) if path.startswith("~") else Path(path)


def test_github_actions_recipe_pulls_once_and_reuses_the_cached_folder(
        tmp_path: Path, hub: HubServer, sharded_repo: str, committed_lock: Path, bin_dir: Path) -> None:
    job = _github_job()
    ran = _github_run(job, workspace=_workspace(tmp_path / "ws1", committed_lock),
                      env=_runner_env(bin_dir, tmp_path / "home1", HF_ENDPOINT=hub.url))
    assert any("--frozen" in s for s in ran) and any("verify" in s for s in ran)
    cache = _github_cache_path(job, tmp_path / "home1")
    assert (_snapshot(cache, sharded_repo) / "config.json").is_file(), "the model must land in the cached folder"
    assert hub.total_bytes() > 0

    # The next job: a new runner whose cache step restored that folder.  Nothing is downloaded again.
    saved = tmp_path / "actions-cache"
    shutil.copytree(cache, saved, symlinks=True)
    hub.reset_stats()
    cache2 = _github_cache_path(job, tmp_path / "home2")
    cache2.parent.mkdir(parents=True)
    shutil.copytree(saved, cache2, symlinks=True)
    _github_run(job, workspace=_workspace(tmp_path / "ws2", committed_lock),
                env=_runner_env(bin_dir, tmp_path / "home2", HF_ENDPOINT=hub.url))
    assert hub.total_bytes() == 0, "a restored cache must not be downloaded again"


def test_github_actions_recipe_fails_the_job_on_a_tampered_cache(
        tmp_path: Path, hub: HubServer, sharded_repo: str, committed_lock: Path, bin_dir: Path) -> None:
    """A cache entry whose bytes changed is repaired by the pull or caught by verify: never a green job on it."""
    job = _github_job()
    env = _runner_env(bin_dir, tmp_path / "home", HF_ENDPOINT=hub.url)
    ws = _workspace(tmp_path / "ws", committed_lock)
    _github_run(job, workspace=ws, env=env)
    cache = _github_cache_path(job, tmp_path / "home")
    cfg = (_snapshot(cache, sharded_repo) / "config.json").resolve()
    cfg.chmod(0o644)
    cfg.write_text(cfg.read_text().replace("synthetic", "SYNTHETIC"))
    verify = [s["run"] for s in job["steps"] if "run" in s and "verify" in s["run"]]
    proc = _run_shell(verify[0], cwd=ws, env={**env, **job["env"]})
    assert proc.returncode == 3, proc.stdout + proc.stderr


@pytest.mark.skipif("--offline" not in _qf_help("pull")[1], reason="offline pulls (`pull --offline`) are not in this build yet")
def test_github_actions_recipe_second_job_passes_with_the_mirror_down(
        tmp_path: Path, hub: HubServer, sharded_repo: str, committed_lock: Path, bin_dir: Path) -> None:
    job = _github_job()
    _github_run(job, workspace=_workspace(tmp_path / "ws1", committed_lock),
                env=_runner_env(bin_dir, tmp_path / "home1", HF_ENDPOINT=hub.url))
    cache, cache2 = _github_cache_path(job, tmp_path / "home1"), _github_cache_path(job, tmp_path / "home2")
    cache2.parent.mkdir(parents=True)
    shutil.copytree(cache, cache2, symlinks=True)
    hub.reset_stats()
    hub.faults.down = True
    _github_run(job, workspace=_workspace(tmp_path / "ws2", committed_lock),
                env=_runner_env(bin_dir, tmp_path / "home2", HF_ENDPOINT=hub.url))
    assert hub.log == [], "a pinned, cached model needs no request at all"


# -- GitLab CI --------------------------------------------------------------------------------------------------

def _gitlab() -> tuple[dict[str, str], dict[str, Any]]:
    doc = yaml.safe_load((RECIPES / "gitlab-ci.yml").read_text())
    variables = {k: str(v) for k, v in doc.get("variables", {}).items()}
    (job,) = [v for k, v in doc.items() if isinstance(v, dict) and "script" in v]
    return variables, job


def _gitlab_run(variables: dict[str, str], job: dict[str, Any], project: Path, env: dict[str, str]) -> None:
    full = {**env, "CI_PROJECT_DIR": str(project)}
    for name, value in variables.items():  # GitLab expands variables that name other variables
        full[name] = Template(value).safe_substitute(full)
    lines = [line for line in job["script"] if not _is_install(line)]
    proc = _run_shell("\n".join(lines), cwd=project, env=full)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gitlab_ci_recipe_caches_inside_the_project_and_reuses_it(
        tmp_path: Path, hub: HubServer, sharded_repo: str, committed_lock: Path, bin_dir: Path) -> None:
    variables, job = _gitlab()
    assert job["cache"]["key"]["files"] == ["qwen-fetch.lock"]
    project = _workspace(tmp_path / "p1", committed_lock)
    _gitlab_run(variables, job, project, _runner_env(bin_dir, tmp_path / "home1", HF_ENDPOINT=hub.url))
    (cached,) = job["cache"]["paths"]
    assert (_snapshot(project / cached, sharded_repo) / "config.json").is_file(), \
        "HF_HUB_CACHE must be the folder the job caches"

    hub.reset_stats()
    project2 = _workspace(tmp_path / "p2", committed_lock)
    shutil.copytree(project / cached, project2 / cached, symlinks=True)
    _gitlab_run(variables, job, project2, _runner_env(bin_dir, tmp_path / "home2", HF_ENDPOINT=hub.url))
    assert hub.total_bytes() == 0


# -- Dockerfile -------------------------------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    root: Path
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    absolute: set[str] = field(default_factory=set)  # top-level folders of the image that the test maps

    def host(self, path: str) -> Path:
        """Where an absolute path of this image lives in the stand-in folder."""
        return self.root / os.path.normpath(os.path.join(self.workdir, path)).lstrip("/")

    def map_text(self, text: str) -> str:
        for top in sorted(self.absolute, key=len, reverse=True):
            text = re.sub(rf"(?<![\w./]){re.escape(top)}(?=/|\b|$)", str(self.root) + top, text)
        return text


def _instructions(dockerfile: Path) -> Iterator[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            yield op.upper(), rest.strip()


def _build(dockerfile: Path, context: Path, out: Path, build_args: dict[str, str], env: dict[str, str]) -> Stage:
    """Interpret the Dockerfile: each stage in its own folder; RUN lines run there (installs skipped)."""
    instructions = list(_instructions(dockerfile))
    absolute = {"/" + p.split("/")[1] for op, rest in instructions if op in ("WORKDIR", "COPY", "ENV")
                for p in re.findall(r"(?<![\w$])/[\w.-]+(?:/[\w.-]+)*", rest)}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for op, rest in instructions:
        if op == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else f"stage{len(stages)}"
            stage = stages[name] = Stage(name, out / name, absolute=absolute)
            stage.root.mkdir(parents=True)
            continue
        assert stage is not None, f"{op} before FROM"
        values = {**stage.args, **stage.env}
        if op == "ARG":
            key, _, default = rest.partition("=")
            value = build_args.get(key, default if "=" in rest else None)
            if value is not None:
                stage.args[key] = value
        elif op == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                stage.env[key] = stage.map_text(Template(value).safe_substitute(values))
        elif op == "WORKDIR":
            stage.workdir = os.path.join(stage.workdir, rest)
            stage.host(".").mkdir(parents=True, exist_ok=True)
        elif op == "COPY":
            words = rest.split()
            source_root = context
            if words[0].startswith("--from="):
                source_root = stages[words.pop(0).split("=", 1)[1]].root
            src, dst = words
            src_path = source_root / src.lstrip("/")
            dst_path = stage.host(dst)
            if dst.endswith("/"):
                dst_path = dst_path / src_path.name
            dst_path.parent.mkdir(parents=True, exist_ok=True)
            if src_path.is_dir():
                shutil.copytree(src_path, dst_path, symlinks=True)
            else:
                shutil.copy2(src_path, dst_path)
        elif op == "RUN":
            if _is_install(rest):
                continue
            proc = subprocess.run(["sh", "-c", stage.map_text(rest)], cwd=stage.host("."),
                                  env={**env, **values}, capture_output=True, text=True, timeout=240)
            assert proc.returncode == 0, f"RUN {rest} failed:\n{proc.stdout}\n{proc.stderr}"
        elif op in ("ENTRYPOINT", "CMD"):
            setattr(stage, op.lower(), json.loads(rest))
        else:
            raise AssertionError(f"the test does not know the instruction {op}")
    assert stage is not None
    return stage


def _start(image: Stage, env: dict[str, str], command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """`docker run IMAGE [COMMAND]`: the ENTRYPOINT with CMD (or the given command) as its arguments."""
    entry = [str(image.host(image.entrypoint[0])), *image.entrypoint[1:]]
    args = [image.map_text(a) for a in (command if command is not None else image.cmd)]
    return subprocess.run([*entry, *args], cwd=image.host("."), env={**env, **image.env}, capture_output=True,
                          text=True, timeout=240)


@pytest.fixture
def image(tmp_path: Path, hub: HubServer, sharded_repo: str, committed_lock: Path, bin_dir: Path) -> Stage:
    context = tmp_path / "context"
    shutil.copytree(RECIPES, context)
    shutil.copy2(committed_lock, context / "qwen-fetch.lock")
    env = _runner_env(bin_dir, tmp_path / "build-home")
    built = _build(context / "Dockerfile", context, tmp_path / "image", {"HF_ENDPOINT": hub.url}, env)
    assert not (built.root / "build").exists(), "the runtime stage must not carry the build stage's files"
    return built


def test_dockerfile_pulls_the_pin_at_build_time_and_the_image_starts_offline(
        tmp_path: Path, hub: HubServer, sharded_repo: str, image: Stage, bin_dir: Path) -> None:
    cache = Path(image.env["HF_HUB_CACHE"])
    assert (_snapshot(cache, sharded_repo) / "config.json").is_file()
    assert image.env.get("HF_HUB_OFFLINE") == "1"
    hub.stop()  # the running container needs no hub
    proc = _start(image, _runner_env(bin_dir, tmp_path / "run-home"), ["sh", "-c", "echo started"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("started")


def test_dockerfile_entrypoint_refuses_a_tampered_model(
        tmp_path: Path, sharded_repo: str, image: Stage, bin_dir: Path) -> None:
    shard = _snapshot(Path(image.env["HF_HUB_CACHE"]), sharded_repo) / "model-00002-of-00004.safetensors"
    blob = shard.resolve()
    blob.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with open(blob, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))
    proc = _start(image, _runner_env(bin_dir, tmp_path / "run-home"), ["sh", "-c", "echo started"])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "started" not in proc.stdout


def _fake_vllm(bin_dir: Path, record: Path) -> None:
    """vLLM is not installed here: a `vllm` that records the folder it was asked to serve."""
    exe = bin_dir / "vllm"
    exe.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {shlex.quote(str(record))}\n"
                   f"printf '%s\\n' \"$HF_HUB_OFFLINE\" >> {shlex.quote(str(record))}\n")
    exe.chmod(0o755)


@needs_path
def test_dockerfile_default_command_serves_the_pinned_snapshot(
        tmp_path: Path, hub: HubServer, sharded_repo: str, image: Stage, bin_dir: Path) -> None:
    record = tmp_path / "vllm-args"
    _fake_vllm(bin_dir, record)
    hub.stop()
    proc = _start(image, _runner_env(bin_dir, tmp_path / "run-home"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args = record.read_text().splitlines()
    assert args[0] == "serve"
    assert Path(args[1]) == _snapshot(Path(image.env["HF_HUB_CACHE"]), sharded_repo)
    assert args[2:4] == ["--served-model-name", QWEN3_VL_8B]


# -- vLLM from the pinned snapshot ------------------------------------------------------------------------------

@needs_path
def test_serve_vllm_recipe_hands_vllm_the_verified_snapshot(
        tmp_path: Path, hub: HubServer, sharded_repo: str, committed_lock: Path, bin_dir: Path) -> None:
    record = tmp_path / "vllm-args"
    _fake_vllm(bin_dir, record)
    ws = _workspace(tmp_path / "ws", committed_lock)
    env = _runner_env(bin_dir, tmp_path / "home", HF_ENDPOINT=hub.url)
    proc = subprocess.run(["sh", str(RECIPES / "serve-vllm.sh")], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args = record.read_text().splitlines()
    cache = tmp_path / "home" / ".cache" / "huggingface" / "hub"
    assert args[:2] == ["serve", str(_snapshot(cache, sharded_repo))]
    assert args[-1] == "1", "vLLM must run with HF_HUB_OFFLINE=1"


@needs_path
def test_serve_vllm_recipe_stops_when_the_snapshot_is_missing(
        tmp_path: Path, committed_lock: Path, bin_dir: Path) -> None:
    """No cache and no reachable mirror: the script fails before vLLM starts (no empty path handed over)."""
    record = tmp_path / "vllm-args"
    _fake_vllm(bin_dir, record)
    ws = _workspace(tmp_path / "ws", committed_lock)
    env = _runner_env(bin_dir, tmp_path / "home", HF_ENDPOINT="http://127.0.0.1:9")
    proc = subprocess.run(["sh", str(RECIPES / "serve-vllm.sh")], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode != 0
    assert not record.exists()


# -- Shell completion -------------------------------------------------------------------------------------------

@pytest.mark.skipif("--show-completion" not in _qf_help()[1], reason="shell completion is not enabled in this build yet")
def test_bash_completion_script_completes_commands(tmp_path: Path, bin_dir: Path) -> None:
    env = _runner_env(bin_dir, tmp_path / "home", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    script = subprocess.run(["qwen-fetch", "--show-completion", "bash"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert script.returncode == 0, script.stderr
    assert "complete" in script.stdout
    assert subprocess.run(["bash", "-n"], input=script.stdout, text=True).returncode == 0
    # What bash does on <TAB> after `qwen-fetch pu`:
    done = subprocess.run(["qwen-fetch"], env={**env, "_QWEN_FETCH_COMPLETE": "complete_bash",
                                               "COMP_WORDS": "qwen-fetch pu", "COMP_CWORD": "1"},
                          capture_output=True, text=True, timeout=60)
    assert "pull" in done.stdout.split()
