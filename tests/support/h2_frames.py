#!/usr/bin/python3
"""A frame-level HTTP/2 client for the integration tests, on Debian's
python3-h2 libraries (hyperframe for frames, hpack for header blocks), so
that it can send what a well-behaved client never would.

    h2_frames.py SCENARIO PORT [OPTIONS]

Runs one scenario against 127.0.0.1:PORT (cleartext, prior knowledge unless
the scenario is an upgrade) and prints one JSON object:

    frames   what the server sent but PING and SETTINGS acknowledgements,
             WINDOW_UPDATE and DATA: {"type", "stream", "at"} plus
             "error_code" and "last_stream_id" (GOAWAY), "error_code"
             (RST_STREAM), "status" and "fields" (HEADERS); "at" is the
             seconds since the connection opened
    acks     {"PING": n, "SETTINGS": n} acknowledgements received
    bodies   {"STREAM": text} DATA received per stream
    closed   true when the server closed the connection
    sent     how many of the requested streams or frames went out
"""
import argparse
import json
import socket
import time
import urllib.request

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CANCEL = 0x8


class Connection:
    def __init__(self, port, preface=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.opened = time.monotonic()
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.acknowledge_settings = True
        self.result = {"frames": [], "acks": {"PING": 0, "SETTINGS": 0}, "bodies": {}, "closed": False, "sent": 0}
        if preface:
            self.send(PREFACE + SettingsFrame(0).serialize())

    def send(self, data):
        """False once the server has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.result["closed"] = True
            return False

    def request_block(self, path, method="GET", extra=()):
        fields = [(":method", method), (":scheme", "http"), (":authority", "127.0.0.1"), (":path", path)]
        return self.encoder.encode(fields + list(extra))

    def headers(self, stream, path, method="GET", extra=(), end_stream=True, end_headers=True):
        frame = HeadersFrame(stream, self.request_block(path, method, extra))
        if end_headers:
            frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    def read(self, quiet=1.0, until=None, limit=15.0):
        """Reads frames until the server closes, `quiet` seconds pass without
        bytes, `until(frame)` is true or `limit` seconds have passed."""
        deadline = time.monotonic() + limit
        while not self.result["closed"] and time.monotonic() < deadline:
            self.sock.settimeout(quiet)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            except ConnectionResetError:
                data = b""
            if not data:
                self.result["closed"] = True
                break
            self.buffer += data
            if self.parse(until):
                return

    def parse(self, until):
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                return False
            frame.parse_body(memoryview(self.buffer[9:9 + length]))
            self.buffer = self.buffer[9 + length:]
            self.record(frame)
            if until and until(frame):
                return True
        return False

    def record(self, frame):
        if isinstance(frame, (PingFrame, SettingsFrame)):
            if "ACK" in frame.flags:
                self.result["acks"][frame.type == PingFrame.type and "PING" or "SETTINGS"] += 1
            elif isinstance(frame, SettingsFrame) and self.acknowledge_settings:
                self.send(SettingsFrame(0, flags=["ACK"]).serialize())
            return
        if isinstance(frame, WindowUpdateFrame):
            return
        if isinstance(frame, DataFrame):
            bodies = self.result["bodies"]
            key = str(frame.stream_id)
            bodies[key] = bodies.get(key, "") + frame.data.decode("latin-1")
            if frame.data:
                # Keep the windows open, as any client would.
                self.send(WindowUpdateFrame(0, len(frame.data)).serialize() +
                          WindowUpdateFrame(frame.stream_id, len(frame.data)).serialize())
            return
        entry = {"type": type(frame).__name__.replace("Frame", "").upper(), "stream": frame.stream_id,
                 "at": round(time.monotonic() - self.opened, 3)}
        if isinstance(frame, GoAwayFrame):
            entry["error_code"] = frame.error_code
            entry["last_stream_id"] = frame.last_stream_id
        elif isinstance(frame, RstStreamFrame):
            entry["error_code"] = frame.error_code
        elif isinstance(frame, HeadersFrame):
            entry["type"] = "HEADERS"
            fields = self.decoder.decode(frame.data, raw=False)
            entry["fields"] = [name for name, _ in fields]
            status = dict(fields).get(":status")
            if status:
                entry["status"] = status
        self.result["frames"].append(entry)

    def finish(self):
        self.sock.close()
        return self.result


def is_goaway(frame):
    return isinstance(frame, GoAwayFrame)


def rapid_reset(args):
    """Streams opened and cancelled at once, up to --count of them. With
    --open-first K, K streams are opened first and cancelled only once the
    recorder at --recorder has seen K requests."""
    c = Connection(args.port)
    c.read(quiet=0.3)
    stream = 1
    if args.open_first:
        c.send(b"".join(c.headers(1 + 2 * i, args.path) for i in range(args.open_first)))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(json.load(urllib.request.urlopen(args.recorder + "/__record", timeout=5))) >= args.open_first:
                break
            time.sleep(0.05)
        c.send(b"".join(RstStreamFrame(1 + 2 * i, CANCEL).serialize() for i in range(args.open_first)))
        c.result["sent"] = args.open_first
        stream = 1 + 2 * args.open_first
    for _ in range(args.count - args.open_first):
        if not c.send(c.headers(stream, args.path) + RstStreamFrame(stream, CANCEL).serialize()):
            break
        c.result["sent"] += 1
        stream += 2
        if c.result["sent"] % 20 == 0:
            c.read(quiet=0.01, until=is_goaway)
            if any(f["type"] == "GOAWAY" for f in c.result["frames"]):
                break
    c.read(quiet=1.0)
    return c.finish()


def continuation_flood(args):
    """A HEADERS frame without END_HEADERS, then CONTINUATION frames that never end it."""
    c = Connection(args.port)
    c.read(quiet=0.3)
    c.send(c.headers(1, args.path, end_headers=False))
    # One field, never indexed, so that the same bytes can be sent again and again.
    block = c.encoder.encode([("x-filler", "f" * (args.frame_bytes - 20), True)], huffman=False)
    frame = ContinuationFrame(1, block).serialize()
    for _ in range(args.count):
        if not c.send(frame):
            break
        c.result["sent"] += 1
    c.read(quiet=1.0)
    return c.finish()


def control_flood(args, frame):
    c = Connection(args.port)
    c.read(quiet=0.3)
    for _ in range(args.count):
        if not c.send(frame):
            break
        c.result["sent"] += 1
        if c.result["sent"] % 100 == 0:
            c.read(quiet=0.005)
    c.read(quiet=1.0)
    return c.finish()


def ping_flood(args):
    return control_flood(args, PingFrame(0, b"12345678").serialize())


def settings_flood(args):
    return control_flood(args, SettingsFrame(0, {SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize())


def stream_id_backwards(args):
    """A request on stream 5, then a new one on stream 3."""
    c = Connection(args.port)
    c.read(quiet=0.3)
    c.send(c.headers(5, args.path))
    c.read(quiet=0.5)
    c.send(c.headers(3, args.path))
    c.result["sent"] = 2
    c.read(quiet=1.0)
    return c.finish()


def one_request(args):
    """One request with the --field NAME:VALUE fields given, and --fields N extra
    ones; with --linger S, goes on reading until S seconds pass in silence."""
    c = Connection(args.port)
    c.read(quiet=0.3)
    extra = [tuple(field.split(":", 1)) for field in args.field]
    extra += [("x-field-%d" % i, "v") for i in range(args.fields)]
    c.send(c.headers(1, args.path, extra=extra))
    c.result["sent"] = 1
    c.read(quiet=1.0, until=lambda f: "END_STREAM" in f.flags or isinstance(f, (RstStreamFrame, GoAwayFrame)))
    if args.linger:
        c.read(quiet=args.linger)
    return c.finish()


def many_streams(args):
    """--count requests at once, answered or refused; reads until all are done."""
    c = Connection(args.port)
    c.read(quiet=0.3)
    data = b"".join(c.headers(1 + 2 * i, args.path) for i in range(args.count))
    c.send(data)
    c.result["sent"] = args.count
    done = set()

    def all_done(frame):
        if isinstance(frame, RstStreamFrame) or "END_STREAM" in frame.flags:
            done.add(frame.stream_id)
        return len(done) == args.count

    c.read(quiet=5.0, until=all_done)
    return c.finish()


def body_pattern(size):
    return bytes(ord("a") + (i * 7) % 26 for i in range(size))


def upgrade_with_body(args):
    """An HTTP/1.1 POST asking for h2c, with a --body-bytes body; the answer comes on stream 1."""
    c = Connection(args.port, preface=False)
    body = body_pattern(args.body_bytes)
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            "HTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: %d\r\n\r\n" % (args.path, len(body)))
    c.send(head.encode() + body)
    c.sock.settimeout(5)
    while b"\r\n\r\n" not in c.buffer:
        data = c.sock.recv(65536)
        if not data:
            break
        c.buffer += data
    status_line, _, c.buffer = c.buffer.partition(b"\r\n\r\n")
    c.result["http1_status"] = status_line.split(b"\r\n")[0].decode("latin-1")
    c.send(PREFACE + SettingsFrame(0).serialize())
    c.result["sent"] = 1
    c.parse(None)
    c.read(quiet=1.0, until=lambda f: f.stream_id == 1 and "END_STREAM" in f.flags)
    return c.finish()


def upload_then_reset(args):
    """A POST declaring --total bytes sends --count of them, waits until the
    recorder at --recorder has seen them all, then cancels the stream."""
    c = Connection(args.port)
    c.read(quiet=0.3)
    c.send(c.headers(1, args.path, method="POST", extra=[("content-length", str(args.total))], end_stream=False))
    sent = 0
    while sent < args.count:
        piece = min(16384, args.count - sent)
        c.send(DataFrame(1, b"u" * piece).serialize())
        sent += piece
    c.result["sent"] = sent
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = json.load(urllib.request.urlopen(args.recorder + "/__record", timeout=5))
        if any(r["body_bytes"] >= args.count for r in records):
            break
        time.sleep(0.05)
    c.result["upstream_had_all"] = time.monotonic() < deadline
    c.send(RstStreamFrame(1, CANCEL).serialize())
    c.read(quiet=0.5)
    return c.finish()


def ends_stream(stream):
    return lambda f: f.stream_id == stream and ("END_STREAM" in f.flags or isinstance(f, RstStreamFrame))


def post_head(c, stream, path, length):
    return c.headers(stream, path, method="POST", extra=[("content-length", str(length))], end_stream=False)


def stalled_body(args):
    """Stream 1 POSTs to --path declaring --total bytes, sends 3 and stalls;
    stream 3 meanwhile GETs --other. Reads until stream 3 has ended and
    stream 1 has been reset, or --linger seconds pass in silence."""
    c = Connection(args.port)
    c.read(quiet=0.3)
    c.send(post_head(c, 1, args.path, args.total) + DataFrame(1, b"abc").serialize() + c.headers(3, args.other))
    c.result["sent"] = 2
    ended = set()

    def both_ended(frame):
        if isinstance(frame, RstStreamFrame) or "END_STREAM" in frame.flags:
            ended.add((frame.stream_id, isinstance(frame, RstStreamFrame)))
        return (1, True) in ended and any(stream == 3 for stream, _ in ended)

    c.read(quiet=args.linger or 3.0, until=both_ended)
    return c.finish()


def trickled_body(args):
    """A POST to --path of --total bytes sent one byte a DATA frame, every --interval seconds."""
    c = Connection(args.port)
    c.read(quiet=0.3)
    c.send(post_head(c, 1, args.path, args.total))
    for i in range(args.total):
        time.sleep(args.interval)
        last = i == args.total - 1
        if not c.send(DataFrame(1, b"t", flags=["END_STREAM"] if last else []).serialize()):
            break
        c.result["sent"] += 1
    c.read(quiet=3.0, until=ends_stream(1))
    return c.finish()


def open_header_block(args):
    """A whole request on stream 1 (--path), answered; then stream 3 starts a
    header block that never ends. Reads until the server closes."""
    c = Connection(args.port)
    c.read(quiet=0.3)
    c.send(c.headers(1, args.path))
    c.read(quiet=3.0, until=ends_stream(1))
    c.result["block_opened"] = round(time.monotonic() - c.opened, 3)
    c.send(c.headers(3, args.path, end_headers=False))
    c.result["sent"] = 2
    c.read(quiet=5.0)
    return c.finish()


def refused_then_quiet(args):
    """Two requests for --path at once, before the server's SETTINGS are
    acknowledged (they never are), so that a limit of one stream refuses the
    second; then silence until the first has its answer."""
    c = Connection(args.port)
    c.acknowledge_settings = False
    c.send(c.headers(1, args.path) + c.headers(3, args.path))
    c.result["sent"] = 2
    c.read(quiet=3.0, until=ends_stream(1))
    return c.finish()


def preface_only(args):
    """The client's connection preface without its SETTINGS frame; reads until the server closes."""
    c = Connection(args.port, preface=False)
    # An acknowledgement would be the client's first frame, which must be its SETTINGS.
    c.acknowledge_settings = False
    c.send(PREFACE)
    c.read(quiet=5.0)
    return c.finish()


SCENARIOS = {
    "rapid_reset": rapid_reset,
    "continuation_flood": continuation_flood,
    "ping_flood": ping_flood,
    "settings_flood": settings_flood,
    "stream_id_backwards": stream_id_backwards,
    "request": one_request,
    "many_streams": many_streams,
    "upgrade_with_body": upgrade_with_body,
    "upload_then_reset": upload_then_reset,
    "stalled_body": stalled_body,
    "trickled_body": trickled_body,
    "open_header_block": open_header_block,
    "preface_only": preface_only,
    "refused_then_quiet": refused_then_quiet,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("port", type=int)
    parser.add_argument("--path", default="/")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--frame-bytes", type=int, default=1024)
    parser.add_argument("--field", action="append", default=[])
    parser.add_argument("--fields", type=int, default=0)
    parser.add_argument("--body-bytes", type=int, default=0)
    parser.add_argument("--total", type=int, default=0)
    parser.add_argument("--recorder", default="")
    parser.add_argument("--open-first", type=int, default=0)
    parser.add_argument("--linger", type=float, default=0)
    parser.add_argument("--other", default="/")
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    print(json.dumps(SCENARIOS[args.scenario](args)))


if __name__ == "__main__":
    main()
