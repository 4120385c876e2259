"""A real RTSP camera for the tests: loops the 8-bit grey frames of one raw file (frames of WIDTH x HEIGHT bytes
back to back) as H.264 over RTP, on rtsp://127.0.0.1:PORT/PATH, over UDP or TCP as the client asks.

It runs under Debian's /usr/bin/python3, which has GStreamer's bindings (python3-gi, python3-gst-1.0,
gir1.2-gst-rtsp-server-1.0; x264enc from gstreamer1.0-plugins-ugly), never under the project's virtualenv, and
needs nothing else (no numpy). It prints ``READY PORT`` once it listens and stops on SIGTERM or SIGINT.

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /thermal --frames frames.gray8 --width 640 --height 480
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def read_frames(path: Path, width: int, height: int) -> list[bytes]:
    data = path.read_bytes()
    size = width * height
    if not data or len(data) % size:
        sys.exit(f"{path}: {len(data)} bytes is not a whole number of {width}x{height} 8-bit frames")
    return [data[i : i + size] for i in range(0, len(data), size)]


def pipeline(width: int, height: int, fps: int, bitrate_kbps: int) -> str:
    # One key frame a second with SPS/PPS in front of it: a client that joins or loses packets recovers fast.
    # One slice a frame (threads=1): with several, rtph264pay puts SPS/PPS before each IDR slice, inside the
    # access unit, and FFmpeg (unlike GStreamer's own client) splits the key frame in two and smears every frame
    # that refers to it.
    return (
        f"( appsrc name=frames format=time caps=video/x-raw,format=GRAY8,width={width},height={height},"
        f"framerate={fps}/1 ! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast threads=1 bitrate={bitrate_kbps} key-int-max={fps} "
        "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )


def feed(media: GstRtspServer.RTSPMedia, frames: list[bytes], fps: int) -> None:
    """Each client's pipeline gets its own appsrc: hand it the frames in a loop, stamped 1/fps apart (the
    pipeline's sinks pace them to the clock)."""
    src = media.get_element().get_by_name("frames")
    count = [0]

    def need_data(appsrc: Gst.Element, _length: int) -> None:
        n = count[0]
        count[0] += 1
        buf = Gst.Buffer.new_wrapped(frames[n % len(frames)])
        buf.pts = buf.dts = n * Gst.SECOND // fps
        buf.duration = Gst.SECOND // fps
        appsrc.emit("push-buffer", buf)

    src.connect("need-data", need_data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/thermal")
    ap.add_argument("--frames", type=Path, required=True, help="raw file of 8-bit grey frames, back to back")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--bitrate", type=int, default=2000, help="kbit/s")
    args = ap.parse_args()

    frames = read_frames(args.frames, args.width, args.height)
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(pipeline(args.width, args.height, args.fps, args.bitrate))
    factory.connect("media-configure", lambda _f, media: feed(media, frames, args.fps))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
