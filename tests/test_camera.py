"""The thermal camera sensor: real OpenCV captures of files, folders and a local MJPEG stream, the
synthetic scene, newest-frame-wins, the stall watchdog, reopen with backoff, and bad input."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from sensors.captures import CameraSpec
from sensors.frames import ThermalFrame
from sensors.sim import SIM_OFFSET, SIM_SCALE, ThermalScene
from sensors.thermal import ThermalCamera
from tests.brokers import wait_for


def _frames(cam: ThermalCamera, stop: threading.Event, limit: float = 30.0) -> list[ThermalFrame]:
    out: list[ThermalFrame] = []
    deadline = time.monotonic() + limit
    for frame in cam.frames(stop):
        out.append(frame)
        if time.monotonic() > deadline:
            break
    return out


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()


def _y16_counts(celsius: np.ndarray) -> np.ndarray:
    return np.round((celsius + 273.15) * 100).astype(np.uint16)


def test_radiometric_folder_gives_celsius_and_skips_a_corrupt_file(tmp_path: Path, stop: threading.Event) -> None:
    temps = np.full((60, 80), 12.0)
    temps[20:40, 30:40] = 31.5
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), _y16_counts(temps))
    (tmp_path / "f1b.png").write_bytes(b"\x89PNG truncated")  # between f1 and f2
    cam = ThermalCamera(CameraSpec("cam-a", str(tmp_path), pixel_format="y16", pace="every"))
    cam.start(stop)
    frames = _frames(cam, stop)
    assert [f.seq for f in frames] == [0, 1, 2]
    assert frames[0].radiometric
    c = frames[0].celsius()
    assert c is not None and c[30, 35] == pytest.approx(31.5, abs=0.01) and c[5, 5] == pytest.approx(12.0, abs=0.01)
    assert cam.counters.frames_bad == 1 and cam.counters.frames_read == 3
    assert "undecodable" in cam.counters.rejects[0].reason
    assert cam.counters.state == "ended"


def test_wrong_pixel_format_is_rejected_with_the_fix(tmp_path: Path, stop: threading.Event) -> None:
    grey = (np.random.default_rng(1).random((48, 64)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), grey)
    cam = ThermalCamera(CameraSpec("cam-b", str(tmp_path), pixel_format="y16", pace="every"))
    cam.start(stop)
    assert _frames(cam, stop) == []
    reason = cam.counters.rejects[0].reason
    assert "expected 16-bit (Y16) frames but got 8-bit" in reason and "pixel_format: gray8" in reason


def test_flat_frame_is_a_sensor_fault(tmp_path: Path, stop: threading.Event) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.full((48, 64), 100, np.uint8))
    cam = ThermalCamera(CameraSpec("cam-c", str(tmp_path), pace="every"))
    cam.start(stop)
    assert _frames(cam, stop) == []
    assert "flat frame" in cam.counters.rejects[0].reason


def test_video_file_keeps_its_own_timing(tmp_path: Path, stop: threading.Event) -> None:
    scene = ThermalScene.from_url("sim://crossing?frames=20&width=160&height=120")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (160, 120), isColor=False)
    for i in range(scene.frame_count):
        counts, _ = scene.render(i)
        writer.write(ThermalFrame("s", i, 0.0, counts, SIM_SCALE, SIM_OFFSET).gray8())
    writer.release()
    cam = ThermalCamera(CameraSpec("cam-v", str(path), pace="every"))
    cam.start(stop)
    frames = _frames(cam, stop)
    assert len(frames) == 20 and not frames[0].radiometric
    steps = np.diff([f.ts for f in frames])
    assert steps == pytest.approx(0.1, abs=0.01)  # 10 fps media time, whatever the read speed


def test_newest_frame_wins_when_the_consumer_is_slow(stop: threading.Event) -> None:
    cam = ThermalCamera(CameraSpec("cam-fast", "sim://quiet?width=160&height=120&frames=400"))
    cam.start(stop)
    first = cam.read(5.0)
    assert first is not None
    # a slow detector: the reader renders ten more frames before anyone takes one
    assert wait_for(lambda: cam.counters.frames_read >= first.seq + 11, 30), cam.counters
    second = cam.read(5.0)
    assert second is not None
    assert second.seq > first.seq + 5, "old frames were queued instead of dropped"
    assert cam.counters.frames_dropped >= second.seq - first.seq - 2
    assert cam.counters.fps > 5


def test_every_frame_pace_for_recordings(stop: threading.Event) -> None:
    cam = ThermalCamera(CameraSpec("cam-rec", "sim://quiet?width=160&height=120&frames=15", pace="every"))
    cam.start(stop)
    frames = []
    for f in cam.frames(stop):
        frames.append(f.seq)
        time.sleep(0.02)
    assert frames == list(range(15)) and cam.counters.frames_dropped == 0


def test_missing_source_is_offline_and_retried_with_backoff(tmp_path: Path, stop: threading.Event) -> None:
    spec = CameraSpec("cam-gone", str(tmp_path / "absent.mkv"), backoff_min_s=0.1, backoff_max_s=0.4)
    cam = ThermalCamera(spec)
    cam.start(stop)
    tries: list[float] = []  # when each retry began, as seen from here
    deadline = time.monotonic() + 30
    while len(tries) < 5 and time.monotonic() < deadline:
        if cam.counters.reopens > len(tries):
            tries.append(time.monotonic())
        time.sleep(0.01)
    assert len(tries) == 5 and cam.state == "offline", cam.counters
    gaps = np.diff(tries)
    # the delay doubles from 0.1 s up to 0.4 s: never shorter than that (a slow machine may take longer)
    assert all(gap >= want - 0.03 for gap, want in zip(gaps, (0.2, 0.4, 0.4, 0.4), strict=True)), gaps
    assert "absent.mkv does not exist" in (cam.counters.last_error or "")


def test_unreachable_stream_names_the_source(stop: threading.Event) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cam = ThermalCamera(CameraSpec("cam-rtsp", f"rtsp://127.0.0.1:{port}/thermal", stall_s=1.0, backoff_min_s=5.0))
    cam.start(stop)
    deadline = time.monotonic() + 10
    while not cam.counters.last_error and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cam.state == "offline"
    assert f"rtsp://127.0.0.1:{port}/thermal: cannot open" in (cam.counters.last_error or "")


class StallingMjpegServer:
    """A local HTTP MJPEG camera that sends a few frames per connection, then goes silent."""

    def __init__(self, frames_per_connection: int = 5) -> None:
        self.n = frames_per_connection
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.connections = 0
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/thermal.mjpg"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        rng = np.random.default_rng(0)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n")
                for _ in range(self.n):
                    _, jpg = cv2.imencode(".jpg", (rng.random((96, 128)) * 255).astype(np.uint8))
                    head = b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                    conn.sendall(head + jpg.tobytes() + b"\r\n")
                    time.sleep(0.05)
            except OSError:  # the camera reader hung up (test over)
                conn.close()
                continue
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        self._stop.wait(30)  # connected but silent: a frozen encoder
        conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def test_stalled_stream_goes_offline_and_is_reopened(stop: threading.Event) -> None:
    server = StallingMjpegServer()
    try:
        cam = ThermalCamera(CameraSpec("cam-http", server.url, stall_s=1.0, backoff_min_s=0.2, backoff_max_s=0.5))
        cam.start(stop)
        states, seen = set(), 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (cam.counters.reopens < 2 or seen < 12):
            if cam.read(0.1) is not None:
                seen += 1
            states.add(cam.state)
        assert cam.counters.reopens >= 2 and server.connections >= 3
        assert seen >= 12 and {"online", "offline"} <= states
        assert "no frame for 1 s" in (cam.counters.last_error or "")
    finally:
        server.close()


def test_one_broken_camera_never_stops_the_others(tmp_path: Path, stop: threading.Event) -> None:
    broken = ThermalCamera(CameraSpec("cam-broken", str(tmp_path / "nope"), backoff_min_s=0.05, backoff_max_s=0.1))
    good = ThermalCamera(CameraSpec("cam-good", "sim://border?width=160&height=120&frames=30", pace="every"))
    broken.start(stop)
    good.start(stop)
    assert len(_frames(good, stop)) == 30
    # a fast host renders the 30 frames before the broken camera's first retry: wait for it, do not assume it
    assert wait_for(lambda: broken.counters.reopens >= 1, timeout=10)
    assert broken.state == "offline" and "nope does not exist" in broken.counters.last_error
    assert good.counters.frames_read == 30 and good.counters.frames_bad == 0


def test_bad_sim_url_is_a_clear_error(stop: threading.Event) -> None:
    cam = ThermalCamera(CameraSpec("cam-sim", "sim://nowhere", backoff_min_s=5))
    cam.start(stop)
    deadline = time.monotonic() + 10
    while not cam.counters.last_error and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "unknown synthetic scene 'nowhere'" in (cam.counters.last_error or "")
    assert "border" in (cam.counters.last_error or "")


def _write_y16_video(path: Path, frames: list[np.ndarray]) -> bool:
    """A 16-bit grey FFV1 recording, as a radiometric camera's stream would carry; False if OpenCV cannot."""
    h, w = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*"FFV1"), 10.0, (w, h),
                             [cv2.VIDEOWRITER_PROP_DEPTH, cv2.CV_16U, cv2.VIDEOWRITER_PROP_IS_COLOR, 0])
    if not writer.isOpened():
        return False
    for f in frames:
        writer.write(f)
    writer.release()
    return path.stat().st_size > 0


class FileServer:
    """Serves one file over local HTTP, so FFmpeg opens it as a network stream (the rtsp:// code path)."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/{path.name}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/x-matroska\r\nContent-Length: %d\r\n\r\n"
                                 % len(self.data) + self.data)
                except OSError:
                    continue

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("over_network", [False, True])
def test_y16_video_keeps_its_16_bit_counts(tmp_path: Path, stop: threading.Event, over_network: bool) -> None:
    temps = np.full((60, 80), 8.0)
    temps[10:30, 20:30] = 36.6
    frames = [_y16_counts(temps + i * 0.1) for i in range(5)]
    path = tmp_path / "radiometric.mkv"
    if not _write_y16_video(path, frames):
        pytest.skip("this OpenCV build cannot write 16-bit FFV1")
    server = FileServer(path) if over_network else None
    try:
        source = server.url if server else str(path)
        cam = ThermalCamera(CameraSpec("cam-y16", source, pixel_format="y16", pace="every", stall_s=5.0))
        cam.start(stop)
        got = _frames(cam, stop, limit=15.0) if not server else [f for f in [cam.read(10.0)] if f is not None]
    finally:
        if server:
            server.close()
    assert got, cam.counters
    assert cam.counters.frames_bad == 0, list(cam.counters.rejects)
    first = got[0]
    assert first.radiometric and first.image.dtype == np.uint16
    np.testing.assert_array_equal(first.image, frames[0])  # FFV1 is lossless: the very counts
    c = first.celsius()
    assert c is not None and c[20, 25] == pytest.approx(36.6, abs=0.01) and c[50, 70] == pytest.approx(8.0, abs=0.01)


def test_colour_source_configured_as_y16_says_so(tmp_path: Path, stop: threading.Event) -> None:
    rng = np.random.default_rng(2)
    cv2.imwrite(str(tmp_path / "a.png"), (rng.random((48, 64, 3)) * 255).astype(np.uint8))
    cam = ThermalCamera(CameraSpec("cam-rgb", str(tmp_path), pixel_format="y16", pace="every"))
    cam.start(stop)
    assert _frames(cam, stop) == []
    assert cam.counters.rejects[0].reason.startswith(
        "source gives 8-bit BGR frames, not Y16: set pixel_format: gray8 or check the stream")


def test_8_bit_video_configured_as_y16_says_so(tmp_path: Path, stop: threading.Event) -> None:
    path = tmp_path / "agc.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48), isColor=False)
    rng = np.random.default_rng(3)
    for _ in range(3):
        writer.write((rng.random((48, 64)) * 255).astype(np.uint8))
    writer.release()
    cam = ThermalCamera(CameraSpec("cam-agc", str(path), pixel_format="y16", pace="every"))
    cam.start(stop)
    assert _frames(cam, stop) == []
    assert cam.counters.frames_bad == 3
    reason = cam.counters.rejects[0].reason
    assert "expected 16-bit (Y16) frames but got 8-bit" in reason and "pixel_format: gray8" in reason
