#!/usr/bin/python3
"""Serve a video file over RTSP on 127.0.0.1 for gatewatch's tests (Debian's GStreamer RTSP server).

Usage: rtsp-serve.py PORT FILE [MOUNT]
Every client gets its own pipeline from the start of FILE (MJPEG AVI, re-encoded to H.264); at the
end of the file the stream ends, as a camera that drops the connection would.
The encoder's settings are stated, not left to x264's defaults: a fixed quantiser (constant
quality whatever the motion, so small plate characters are never starved by a rate controller),
a key frame every 5 frames, no B-frames, one encoder thread (the same stream on any machine).
Must run with Debian's /usr/bin/python3 (it needs python3-gi).
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

port, path = sys.argv[1], sys.argv[2]
mount = sys.argv[3] if len(sys.argv) > 3 else "/lane"
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( filesrc location={path} ! avidemux ! jpegdec ! videoconvert ! "
    "x264enc tune=zerolatency speed-preset=ultrafast pass=quant quantizer=18 key-int-max=5 "
    "bframes=0 threads=1 ! rtph264pay name=pay0 pt=96 )"
)
factory.set_shared(False)
server.get_mount_points().add_factory(mount, factory)
if server.attach(None) == 0:
    sys.exit(f"rtsp-serve: cannot listen on 127.0.0.1:{port}")
print(f"rtsp-serve: rtsp://127.0.0.1:{port}{mount}", flush=True)
GLib.MainLoop().run()
