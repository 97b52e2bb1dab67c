"""The web UI stays unprivileged and light: it never loads BCC, pyroute2 or the model."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("bcc", "pyroute2", "onnxruntime", "numpy")


def test_web_ui_imports_neither_bcc_nor_pyroute2_nor_onnxruntime():
    code = ("import sys, anabranch.webui.app, anabranch.webui.main, anabranch.webui.server; "
            f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_importing_the_package_loads_nothing_else():
    code = "import sys, anabranch.webui; print('flask' in sys.modules, 'zmq' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"]
