"""``gradcam-desktop --self-test`` on the installed package, in a fresh process (as a user runs it)."""

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from gradcam_desktop import self_test


def _command() -> list[str]:
    """The installed gui-script beside this interpreter, else ``python -m gradcam_desktop``."""
    script = Path(sys.executable).parent / ("gradcam-desktop.exe" if os.name == "nt" else "gradcam-desktop")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gradcam_desktop"]


def _run(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    # Not the checkout as working directory: the installed package is what gets imported. No display
    # variables: the self-test must choose offscreen by itself. QSettings go to a temporary folder.
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "GRADCAM_DESKTOP_NO_DIALOGS")}
    clean.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
                 **env)
    return subprocess.run([*_command(), "--self-test"], capture_output=True, text=True, timeout=400, env=clean,
                          cwd=str(tmp_path))


def test_self_test_prints_one_ok_line_with_versions_and_timings(tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    line = lines[0]
    assert line.startswith("self-test ok: ")
    for name in ("gradcam-desktop", "tensorflow", "keras", "PySide6-Essentials"):
        assert metadata.version(name) in line, (name, line)
    assert f"Python {'.'.join(map(str, sys.version_info[:3]))}," in line
    timings = dict(re.findall(r"(import|window|engine|model|first map|total) (\d+\.\d) s", line))
    assert set(timings) == {"import", "window", "engine", "model", "first map", "total"}, line
    parts = sum(float(timings[k]) for k in ("import", "window", "engine", "model", "first map"))
    assert parts <= float(timings["total"]) + 0.5  # each printed to 0.1 s: five roundings, ≤ 0.05 each
    # The user's settings were not written (the run used a temporary QSettings folder).
    assert not (tmp_path / "config" / "GradCAMDesktop").exists()


def test_self_test_fails_in_one_line_when_tensorflow_is_broken(tmp_path):
    fake = tmp_path / "fake"
    (fake / "tensorflow").mkdir(parents=True)
    (fake / "tensorflow" / "__init__.py").write_text('raise ImportError("libtensorflow is damaged (test)")\n')
    result = _run(tmp_path, PYTHONPATH=str(fake))
    assert result.returncode == 1
    assert result.stdout == ""
    failure = [ln for ln in result.stderr.splitlines() if ln.startswith("self-test failed")]
    assert failure == [failure[0]] and "libtensorflow is damaged (test)" in failure[0], result.stderr[-2000:]


def test_a_crash_is_one_line_and_exit_code_1(monkeypatch, capsys):
    def crash(*_args, **_kwargs):
        raise RuntimeError("\n\nfirst line\nsecond line")  # numpy-style: blank lines first

    monkeypatch.setattr(self_test, "run", crash)
    assert self_test.main() == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "self-test failed: RuntimeError: first line\n"


@pytest.mark.parametrize("values, reason", [([[0.0, 0.0]], "zero everywhere"), ([[float("nan"), 1.0]], "not finite"),
                                            (None, "empty")])
def test_a_map_that_shows_nothing_fails(values, reason):
    import numpy as np

    class Result:
        raw = None if values is None else np.array(values, dtype=np.float32)
        class_name, score = "circle", 0.9

    with pytest.raises(self_test.SelfTestError, match=reason):
        self_test._check_map(Result())  # noqa: SLF001 - the check itself, without a window


def test_help_names_the_new_options():
    result = subprocess.run([sys.executable, "-m", "gradcam_desktop", "--help"], capture_output=True, text=True,
                            timeout=120)
    for option in ("--self-test", "--install-desktop-entry", "--uninstall-desktop-entry"):
        assert option in result.stdout
