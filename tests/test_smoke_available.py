"""The smoke-load check on a pull must be cheap when there is no GPU: torch is not imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qwen_fetch.smoke import check as smoke


def test_no_gpu_is_detected_without_importing_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smoke, "_gpu_device_nodes", lambda: False)
    code = ("import sys; from qwen_fetch.smoke import check as smoke; smoke._gpu_device_nodes = lambda: False\n"
            "ok, why = smoke.smoke_available('auto'); print(ok, 'torch' in sys.modules, why)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False False no GPU")


def test_cpu_request_is_available_when_the_extra_is_installed() -> None:
    pytest.importorskip("torch")
    assert smoke.smoke_available("cpu") == (True, "cpu (requested)")
