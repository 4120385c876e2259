"""Several cameras on one box: each camera's load in ``health`` (captured, detected, gated, dropped, frame age
and detector time) and at the end of ``run``; one shared engine serves them all, a quiet camera's frames are
gated, and a camera whose source ends does not stop the others."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from edge_agent.config.agent import parse_config
from edge_agent.runtime.agent import Agent
from tests.brokers import wait_for

pytestmark = pytest.mark.slow


def _cameras(n_busy: int, ended: bool) -> list[dict]:
    cams = [{"id": f"busy{i}", "source": f"sim://border?fps=5&realtime=1&loop=1&seed={i}", "pixel_format": "y16",
             "scale": 0.01, "offset": -273.15} for i in range(n_busy)]
    cams.append({"id": "quiet", "source": "sim://quiet?fps=5&realtime=1&loop=1", "pixel_format": "y16",
                 "scale": 0.01, "offset": -273.15})
    if ended:  # a short scene that is not looped: its source ends after 2 s
        cams.append({"id": "short", "source": "sim://walkers?fps=5&realtime=1&frames=10", "pixel_format": "y16",
                     "scale": 0.01, "offset": -273.15})
    return cams


def test_health_shows_each_cameras_load_and_one_engine_serves_them(tmp_path: Path, default_ov320: Path) -> None:
    cfg = {"site": "t", "box": "multi", "state_dir": str(tmp_path / "state"),
           "detector": {"model": str(default_ov320), "imgsz": 320},
           "cameras": _cameras(3, ended=True)}
    agent = Agent(parse_config(yaml.safe_dump(cfg)))
    agent.start()
    runner = threading.Thread(target=agent.run_forever, daemon=True)
    runner.start()
    try:
        def loads() -> dict:
            return agent.health()["cameras"]

        # every busy camera detected frames; the short one ended and the rest go on without it
        assert wait_for(lambda: all(loads()[f"busy{i}"]["detected"] >= 15 for i in range(3)), 90), loads()
        assert wait_for(lambda: agent.cameras["short"].ended, 30)
        after_end = {k: v["detected"] for k, v in loads().items()}
        assert wait_for(lambda: all(loads()[f"busy{i}"]["detected"] >= after_end[f"busy{i}"] + 10 for i in range(3)),
                        60), loads()
        health = agent.health()
    finally:
        agent.stop_event.set()
        runner.join(10)
        agent.stop()
    cams = health["cameras"]
    assert set(cams) == {"busy0", "busy1", "busy2", "quiet", "short"}
    for name in ("busy0", "busy1", "busy2"):
        c = cams[name]
        # every frame captured was detected, gated or dropped (a newer one replaced it), but the one or two in flight
        assert 0 <= c["captured"] - (c["detected"] + c["gated"] + c["dropped"]) <= 2, c
        assert c["age_ms_p50"] is not None and 0 < c["age_ms_p50"] <= c["age_ms_p99"]
        assert c["detect_ms_p50"] is not None and c["detect_ms_p50"] > 0
        assert c["detect_fps"] > 0
    # the quiet scene has nothing moving: its frames are mostly gated, not detected
    assert cams["quiet"]["gated"] > cams["quiet"]["detected"], cams["quiet"]
    engine = health["engine"]
    assert engine["workers"] == 2 and engine["served"] == sum(engine["by_priority"].values()) > 0
    assert engine["errors"] == 0
    # the crops went through in mosaics of up to four (of one camera or several: test_engine)
    assert engine["crops"] > 0 and engine["crops"] / 4 <= engine["mosaics"] <= engine["crops"], engine
    # every inference (a whole frame or a mosaic of crops) ran either alone on all threads or beside another on a
    # stream; counted when it goes in, served when it comes out: one or two in flight
    frames = engine["frames"]
    assert 0 <= sum(frames.values()) - (engine["whole_frames"] + engine["mosaics"]) <= 2, engine
    assert frames["beside_others"] > 0, engine
    lines = agent.load_lines()
    assert any(line.startswith("camera busy0: ") and "frames captured" in line and "frame age p50" in line
               for line in lines), lines
