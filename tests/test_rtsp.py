"""The camera reader against a real RTSP H.264 camera (GStreamer's RTSP server, a child process under Debian's
python3, serving the simulator's scene): frames arrive and show what was sent; a camera that dies mid-stream goes
offline after ``stall_s`` and is reopened by the reader itself once it is back on the same port; and after the
trip through the codec and the reconnect the people are still where the simulator's truth puts them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sensors.captures import CameraSpec
from sensors.frames import ThermalFrame
from sensors.thermal import ThermalCamera
from tests.brokers import wait_for
from tests.rtsp import RtspCamera, SentScene, render_scene

pytestmark = pytest.mark.integration

SCENE = "sim://walkers?frames=100"  # three people walking in the open; 10 s at 10 fps, looped by the server
STALL_S = 3.0  # also the reader's open timeout: FFmpeg probes ~2-3 s of a 10 fps stream before it opens
MAX_MEAN_DIFF = 6.0  # grey levels; H.264 at 2 Mbit/s gives about 2
WARM_ABOVE_BACKGROUND = 60.0  # grey levels; the sent frames have a person's 90th percentile ~100 above


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> SentScene:
    return render_scene(SCENE, tmp_path_factory.mktemp("rtsp-scene"))


@pytest.fixture
def rtsp(scene: SentScene) -> Iterator[RtspCamera]:
    server = RtspCamera(scene)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def reader(rtsp: RtspCamera) -> Iterator[ThermalCamera]:
    """The box's camera reader on the server's URL, stopped and joined before the server goes."""
    stop = threading.Event()
    cam = ThermalCamera(CameraSpec("cam-rtsp", rtsp.url, pixel_format="gray8", stall_s=STALL_S,
                                   backoff_min_s=0.5, backoff_max_s=2.0))
    cam.start(stop)
    yield cam
    stop.set()
    cam.join(STALL_S + 10)


def take(cam: ThermalCamera, n: int, after_seq: int = 0, timeout: float = 30.0) -> list[ThermalFrame]:
    """The next ``n`` frames numbered ``after_seq`` or later (an older one may still wait in the reader's slot)."""
    got: list[ThermalFrame] = []

    def enough() -> bool:
        frame = cam.read(0.2)
        if frame is not None and frame.seq >= after_seq:
            got.append(frame)
        return len(got) >= n

    assert wait_for(enough, timeout), f"{len(got)} of {n} frames in {timeout} s; {cam.counters}"
    return got


def people_off_their_truth(scene: SentScene, frame: ThermalFrame) -> tuple[int, list[str]]:
    """How many near, fully visible people the frame's truth has, and those not warm inside their truth box
    (the truth is that of the sent frame the image shows)."""
    index, _ = scene.nearest(frame.image)
    background = float(np.median(frame.image))
    checked, problems = 0, []
    for t in scene.truths[index]:
        x1, y1, x2, y2 = (round(v) for v in t.bbox)
        if t.label != "person" or t.visible < 0.9 or y2 - y1 < 40:
            continue
        checked += 1
        warm = float(np.percentile(frame.image[y1:y2, x1:x2], 90))
        if warm < background + WARM_ABOVE_BACKGROUND:
            problems.append(f"frame {frame.seq} (sent {index}): person {t.track_id} in {t.bbox} is {warm:.0f}, "
                            f"background {background:.0f}")
    return checked, problems


def assert_scene_came_through(scene: SentScene, frames: list[ThermalFrame]) -> None:
    """The frames show what was sent, and each near person is warm where the truth says. (The place to run the
    project's detector on ``frames`` too and match its boxes with ``scene.truths``.)"""
    matches = [scene.nearest(f.image) for f in frames]
    assert max(diff for _, diff in matches) < MAX_MEAN_DIFF, matches
    checked = 0
    for frame in frames:
        n, problems = people_off_their_truth(scene, frame)
        assert not problems, problems
        checked += n
    assert checked >= 2 * len(frames)


def test_sent_frames_have_warm_people(scene: SentScene) -> None:
    """The people check means something: in what the server is given, every near person stands out."""
    for i in range(0, len(scene.frames), 10):
        frame = ThermalFrame("sent", i, 0.0, scene.frames[i])
        checked, problems = people_off_their_truth(scene, frame)
        assert checked >= 2 and not problems, problems


def test_frames_from_a_real_rtsp_camera(scene: SentScene, reader: ThermalCamera) -> None:
    frames = take(reader, 20)
    assert all(f.image.shape == (480, 640) and f.image.dtype == np.uint8 and not f.radiometric for f in frames)
    assert_scene_came_through(scene, frames)
    shown = [scene.nearest(f.image)[0] for f in frames]
    assert len(set(shown)) >= 15, f"the picture does not move: sent frames {shown}"
    c = reader.counters
    assert c.state == "online" and c.frames_bad == 0 and c.reopens == 0, c


def test_camera_that_dies_is_reopened_when_it_comes_back(scene: SentScene, rtsp: RtspCamera,
                                                         reader: ThermalCamera) -> None:
    take(reader, 5)
    killed = time.monotonic()
    rtsp.kill()  # a power cut: no TEARDOWN, the connection just goes
    assert wait_for(lambda: reader.state == "offline", timeout=STALL_S + 10), reader.counters
    offline_after = time.monotonic() - killed
    silent = time.monotonic() - reader.counters.last_frame_mono
    assert silent >= STALL_S, f"offline after {silent:.1f} s without a frame, before stall_s"
    # while the camera is away the reader keeps trying and says why it cannot
    assert wait_for(lambda: "cannot open" in reader.counters.last_error, timeout=20), reader.counters
    assert reader.counters.reopens >= 1

    seq_at_restart = reader.counters.frames_read
    restarted = time.monotonic()
    rtsp.start()  # the same port
    assert wait_for(lambda: reader.counters.frames_read > seq_at_restart, timeout=30), reader.counters
    back_after = time.monotonic() - restarted
    after = take(reader, 10, after_seq=seq_at_restart)
    c = reader.counters
    assert reader.state == "online" and c.reopens >= 1 and c.frames_bad == 0, c
    assert_scene_came_through(scene, after)
    print(f"offline {offline_after:.1f} s after the kill (stall_s {STALL_S}); frames again {back_after:.1f} s "
          f"after the restart; {c.reopens} reopens")


def test_the_server_says_why_it_cannot_serve(tmp_path: Path) -> None:
    bad = tmp_path / "frames.gray8"
    bad.write_bytes(b"\x00" * 1000)  # not a whole 640x480 frame
    server = RtspCamera(SentScene(np.zeros((1, 480, 640), np.uint8), [[]], bad, 10))
    with pytest.raises(RuntimeError, match="not a whole number of 640x480 8-bit frames"):
        server.start()


FAR_SCENE = "sim://benchmarks/scenarios/far-people-200m.yaml?realistic=1"  # one walker 200 m out: ~8 px tall


@pytest.fixture(scope="module")
def far_scene(tmp_path_factory: pytest.TempPathFactory) -> SentScene:
    return render_scene(FAR_SCENE, tmp_path_factory.mktemp("rtsp-far"), mark=True)


@pytest.mark.slow
def test_a_far_person_is_found_through_the_codec_after_the_camera_comes_back(far_scene: SentScene,
                                                                            default_ov640: Path) -> None:
    """The realistic far scene (noise, drift, the camera's own gain control, clutter) streamed as H.264 by the
    RTSP server, which dies and comes back: after the reconnect the box's own chain (heat proposals, crops, the
    tracker, physics through the far mount's calibration) finds the person 200 m out where the truth has them,
    as a person or unknown, never an animal or a vehicle."""
    from edge_agent.config.agent import load_config
    from edge_agent.perception.build import build_detector, build_pipeline
    from edge_agent.perception.geometry import CameraGeometry
    from edge_agent.perception.tracks import CameraPerception
    from tests.conftest import ROOT

    config = load_config(ROOT / "benchmarks" / "scenarios" / "far-site.yaml")
    camera = config.cameras[0]
    geometry = CameraGeometry.of(camera)
    detector = build_detector(config)
    detector.load()
    server = RtspCamera(far_scene).start()
    stop = threading.Event()
    cam = ThermalCamera(CameraSpec("far-mast", server.url, pixel_format="gray8", stall_s=STALL_S,
                                   backoff_min_s=0.5, backoff_max_s=2.0))
    cam.start(stop)
    try:
        take(cam, 5)
        server.kill()
        assert wait_for(lambda: cam.state == "offline", timeout=STALL_S + 10), cam.counters
        restart_seq = cam.counters.frames_read
        server.start()
        frames = take(cam, 80, after_seq=restart_seq, timeout=60)
    finally:
        stop.set()
        cam.join(STALL_S + 10)
        server.stop()
    pipeline, perception = build_pipeline(config, detector, geometry), CameraPerception(geometry)
    found, wrong = 0, []
    for frame in frames:
        result = pipeline.process(frame)
        seen = perception.frame(frame.ts, result.tracks, (640, 480))
        index = far_scene.marked(frame.image)
        people = [t for t in far_scene.truths[index] if t.label == "person" and t.visible > 0.5]
        for point in seen.points:
            x1, y1, x2, y2 = point.bbox
            if not any(t.bbox[0] < x2 and x1 < t.bbox[2] and t.bbox[1] < y2 and y1 < t.bbox[3] for t in people):
                continue
            if point.settled and point.label in ("person", "unknown"):
                found += 1
            elif point.settled:
                wrong.append((frame.seq, point.label, point.reason))
    assert not wrong, wrong  # never an animal or a vehicle
    assert found >= 30, f"the person 200 m out was classified in {found} of the last {len(frames)} frames"
