"""Operating a box: doctor finds what is wrong and says how to fix it; the systemd unit is hardened and valid;
install.sh puts everything in place; logs are JSON lines, rate-limited and never show a secret."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_agent.logs import JsonFormatter, RateLimit, Redact
from tests.brokers import ROOT, Mosquitto

EXE = str(Path(sys.executable).with_name("edge-agent"))
ANALYZE = shutil.which("systemd-analyze")


def _doctor(tmp_path: Path, cfg: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([EXE, "doctor", "-c", str(path), "--camera-timeout", "3", "--listen", "0.5"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.integration
def test_doctor_reports_missing_camera_wrong_password_and_unwritable_state(tmp_path: Path,
                                                                          default_ov320: Path) -> None:
    broker = Mosquitto(users={"box1": "right-horse-battery"}).start()
    try:
        good_pw, bad_pw = tmp_path / "good", tmp_path / "bad"
        good_pw.write_text("right-horse-battery\n")
        bad_pw.write_text("wrong-password\n")
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where the state directory should be")
        base = {"site": "t", "box": "box1", "detector": {"model": str(default_ov320), "imgsz": 320},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": "box1"}}
        bad = _doctor(tmp_path, {**base, "state_dir": str(blocker / "state"),
                                 "cameras": [{"id": "cam-1", "source": "/dev/video97"}],
                                 "mqtt": {**base["mqtt"], "password_file": str(bad_pw)}})
        assert bad.returncode == 1, bad.stdout + bad.stderr
        out = bad.stdout
        assert re.search(r"^FAIL camera cam-1: /dev/video97: .*\n     fix: check the cable", out, re.M), out
        assert re.search(r"^FAIL broker: 127\.0\.0\.1:\d+ refused the connection: Not authorized\n     fix: check "
                         r"mqtt\.username and mqtt\.password_file", out, re.M), out
        assert re.search(r"^FAIL state directory: .*blocker/state is not writable: .*\n     fix: ", out, re.M), out
        assert "wrong-password" not in out + bad.stderr
        assert re.search(r"^WARN camera cam-1 classes: it cannot tell animals from people .*\n     fix: survey 4\+ "
                         r"ground points", out, re.M), out  # no calibration: no real sizes
        assert re.search(r"doctor: FAIL \([34] failed, 1 warnings\)$", out.rstrip())  # the model needs the state dir

        good = _doctor(tmp_path, {**base, "state_dir": str(tmp_path / "state"),
                                  "cameras": [{"id": "cam-1", "source": "sim://quiet", "pixel_format": "y16"}],
                                  "mqtt": {**base["mqtt"], "password_file": str(good_pw)}})
        assert good.returncode == 0, good.stdout + good.stderr
        assert re.search(r"^OK   camera cam-1: sim://quiet: producing 640x480 radiometric frames", good.stdout, re.M)
        assert re.search(r"^OK   detector: .* ms per frame at 320", good.stdout, re.M)
        assert re.search(r"^OK   broker: .* accepts this box as box1", good.stdout, re.M)
    finally:
        broker.remove()


def _unit(tmp_path: Path) -> Path:
    unit = tmp_path / "edge-agent.service"
    unit.write_text((ROOT / "systemd" / "edge-agent.service").read_text().replace("@PREFIX@", str(ROOT)))
    return unit


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (./dev installs it)")
def _exposure(unit: Path) -> float:
    sec = subprocess.run([ANALYZE, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for edge-agent\.service: (\d+\.\d+)", sec.stdout)
    assert m, sec.stdout + sec.stderr
    return float(m.group(1))


def _readme_exposure() -> float:
    m = re.search(r"sandbox scores (\d+\.\d+) in `systemd-analyze security`", (ROOT / "README.md").read_text())
    assert m, "the README states the unit's exposure score"
    return float(m.group(1))


def test_unit_is_hardened_as_the_readme_says_and_verifies(tmp_path: Path) -> None:
    unit = _unit(tmp_path)
    assert _exposure(unit) <= _readme_exposure()
    ver = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert ver.returncode == 0 and ver.stderr.strip() == "", ver.stderr
    text = unit.read_text()
    for needed in ("Type=notify", "WatchdogSec=", "Restart=always", "StartLimitBurst=", "DeviceAllow=char-ttyUSB rw",
                   "DeviceAllow=char-video4linux rw", "StateDirectory=edge-agent", "ExecReload=/bin/kill -HUP"):
        assert needed in text


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (./dev installs it)")
def test_install_script_puts_unit_config_state_and_models_in_place(tmp_path: Path) -> None:
    stage = tmp_path / "root"
    out = subprocess.run([str(ROOT / "systemd" / "install.sh"), "--no-start"], capture_output=True, text=True,
                         env={"DESTDIR": str(stage), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    unit = (stage / "etc/systemd/system/edge-agent.service").read_text()
    assert f"ExecStart={ROOT}/.venv/bin/edge-agent --log-json run --config /etc/edge-agent/config.yaml" in unit
    assert (stage / "etc/edge-agent/config.yaml").read_text() == (ROOT / "configs/field-box.yaml").read_text()
    assert (stage / "var/lib/edge-agent/models").is_dir()
    # a checkout or an interpreter under /root or /home stays reachable behind ProtectHome, and no less sandboxed
    base = subprocess.run([sys.executable, "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                          text=True).stdout.strip()
    hidden = [p for p in (str(ROOT.resolve()), base) if re.match(r"^(/home|/root|/run/user)(/|$)", p)]
    if hidden:
        assert "ProtectHome=tmpfs" in unit and f"BindReadOnlyPaths={' '.join(hidden)}" in unit, unit
    else:
        assert "ProtectHome=yes" in unit
    assert _exposure(stage / "etc/systemd/system/edge-agent.service") <= _readme_exposure()
    (stage / "etc/edge-agent/config.yaml").write_text("site: mine\nbox: mine\n")
    again = subprocess.run([str(ROOT / "systemd" / "install.sh"), "--no-start"], capture_output=True, text=True,
                           env={"DESTDIR": str(stage), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=120)
    assert again.returncode == 0 and "kept as it is" in again.stderr
    assert (stage / "etc/edge-agent/config.yaml").read_text() == "site: mine\nbox: mine\n"


def _logger(*filters: logging.Filter) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    for f in filters:
        handler.addFilter(f)
    lg = logging.getLogger(f"test-{id(buf)}")
    lg.handlers = [handler]
    lg.propagate = False
    lg.setLevel(logging.INFO)
    return lg, buf


def test_logs_are_json_lines_rate_limited_and_redacted() -> None:
    lg, buf = _logger(RateLimit(burst=3, window_s=60), Redact(["hunter2-secret"]))
    for i in range(50):
        lg.warning("camera %s: bad frame %d", "cam-1", i)
    lg.error("connect failed with password hunter2-secret")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [x["msg"] for x in lines[:3]] == [f"camera cam-1: bad frame {i}" for i in range(3)]
    assert len(lines) == 4  # 47 repeats held back
    assert lines[-1]["msg"] == "connect failed with password ***" and lines[-1]["level"] == "error"
    assert set(lines[0]) >= {"ts", "level", "logger", "msg"}


def test_run_logs_json_lines_without_the_broker_password(tmp_path: Path) -> None:
    cfg = {"site": "t", "box": "b", "state_dir": str(tmp_path / "s"),
           "mqtt": {"host": "127.0.0.1", "port": 1, "username": "u", "password": "pa55-word-xyz",
                    "reconnect_max_s": 1}}
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([EXE, "--log-json", "run", "-c", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    records = [json.loads(x) for x in out.splitlines() if x.strip()]
    assert any("started" in r["msg"] for r in records)
    assert any("cannot reach the broker" in r["msg"] for r in records)
    assert "pa55-word-xyz" not in out + err
