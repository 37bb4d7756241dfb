"""A real RTSP server on loopback for the tests: GStreamer's GstRtspServer streaming an MJPEG AVI
video (real photos, written by OpenCV) as RTP/JPEG at the video's own frame rate.

    /usr/bin/python3 tests/camera/rtsp_server.py PORT VIDEO.avi

Run by Debian's system Python, which has ``gi`` with GstRtspServer 1.0 (packages
gstreamer1.0-rtsp, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,bad}); the
test venv does not. Serves ``rtsp://127.0.0.1:PORT/cam``, prints ``ready`` on stdout once it
listens, and runs until SIGTERM/SIGINT. Every client gets its own stream (not shared), so a
new server process on the same port is what a camera sees after a restart.
"""

from __future__ import annotations

import signal
import sys


def main() -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    port, video = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        # Decoded and encoded again by GStreamer: RTP/JPEG (RFC 2435) carries baseline 4:2:0
        # JPEGs only, which OpenCV's MJPG frames are not always.
        f'( filesrc location="{video}" ! avidemux ! jpegdec ! videoconvert '
        "! jpegenc quality=90 ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
