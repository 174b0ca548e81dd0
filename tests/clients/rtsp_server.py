#!/usr/bin/python3
"""A real RTSP server for tests/rtsp.rs: GStreamer's gst-rtsp-server.

Serves one MP4 file (H.264, optionally AAC) at rtsp://127.0.0.1:PORT/clip,
read at real time from the start for every client, over RTP/AVP (UDP) or
RTP/AVP/TCP (interleaved). Listens on loopback only, on a free port the
kernel picks, and prints `PORT <n>` on stdout once it accepts connections.

    rtsp_server.py FILE [--audio] [--user NAME --password PASS]

--audio: the file has an AAC track, served as a second stream.
--user/--password require Basic authentication (401 without it).

Debian: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0
gstreamer1.0-plugins-good. It stops on SIGTERM, SIGINT or when stdin closes.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--audio", action="store_true", help="the file has an AAC track")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")

    # qtdemux gives AVC (length-prefixed) H.264 with its avcC, which
    # rtph264pay takes as is and announces in the SDP (sprop-parameter-sets).
    launch = (
        f'( filesrc location="{args.file}" ! qtdemux name=d '
        "d.video_0 ! queue ! rtph264pay name=pay0 pt=96 config-interval=-1 "
    )
    if args.audio:
        launch += "d.audio_0 ! queue ! rtpmp4gpay name=pay1 pt=97 "
    launch += ")"
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)

    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role(
            "viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True
        )
        factory.set_permissions(permissions)

    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)

    def stdin_closed(_fd, _cond):
        loop.quit()
        return False

    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_HUP | GLib.IO_IN, stdin_closed)

    print(f"PORT {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
