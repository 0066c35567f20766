#!/usr/bin/python3
"""An HTTP/2 (h2c, prior knowledge) echo upstream for the integration tests.

Each request is answered with a JSON description of what arrived: this
upstream's name, the pseudo-headers, the header fields in order, the body's
length and FNV-1a 64 hash, the request trailers, and which TCP connection
(numbered from 1 in accept order) and stream carried it. With the request
header `x-echo-trailers: yes` the answer has no content-length and ends with
trailers (x-upstream-trailer, x-body-fnv1a64).

Paths that misbehave on purpose:
  /__h2/stats             {"connections": accepted so far, "open": open now}
  /__h2/delay/MS...       answered after MS milliseconds (at most 10 s)
  /__h2/bytes/N           N bytes 'a'..'z' repeated (at most 256 MiB)
  /__h2/reset             the stream is reset (INTERNAL_ERROR), nothing answered
  /__h2/garbage           bytes that are no HTTP/2 frame: a session error
  /__h2/refuse-once/KEY   the first time KEY is seen: GOAWAY with a last
                          stream id below this stream's, then the connection
                          closes; later times: an ordinary echo

usage: h2_echo.py --name NAME --listen 127.0.0.1:PORT [--max-streams N]
Prints "listening HOST:PORT" once listening. Binds to loopback only.
Needs Debian's python3-h2 (hence /usr/bin/python3).
"""

import argparse
import asyncio
import json
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

MAX_DELAY_MS = 10000
MAX_BYTES = 256 << 20


def fnv1a64(hash_value, data):
    for byte in data:
        hash_value ^= byte
        hash_value = (hash_value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return hash_value


FNV_OFFSET = 0xCBF29CE484222325


class Stats:
    def __init__(self):
        self.accepted = 0
        self.open = 0
        self.refused_keys = set()


class Request:
    def __init__(self, headers):
        self.headers = headers
        self.body_bytes = 0
        self.body_hash = FNV_OFFSET
        self.body_start = bytearray()
        self.trailers = []


class EchoProtocol(asyncio.Protocol):
    def __init__(self, name, stats, max_streams):
        self.name = name
        self.stats = stats
        self.max_streams = max_streams
        self.requests = {}
        self.window_open = {}
        self.transport = None
        self.number = 0
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)

    def connection_made(self, transport):
        self.transport = transport
        self.stats.accepted += 1
        self.stats.open += 1
        self.number = self.stats.accepted
        settings = {}
        if self.max_streams:
            settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = self.max_streams
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()

    def connection_lost(self, exc):
        self.stats.open -= 1
        for event in self.window_open.values():
            event.set()

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data):
        try:
            events = self.conn.receive_data(data)
        except Exception as error:  # a protocol error from the proxy: close
            print("h2_echo: protocol error:", error, file=sys.stderr, flush=True)
            self.flush()
            self.transport.close()
            return
        for event in events:
            self.handle(event)
        self.flush()

    def handle(self, event):
        if isinstance(event, h2.events.RequestReceived):
            self.requests[event.stream_id] = Request(event.headers)
            if event.stream_ended:
                self.answer(event.stream_id)
        elif isinstance(event, h2.events.DataReceived):
            request = self.requests.get(event.stream_id)
            if request is not None:
                request.body_bytes += len(event.data)
                request.body_hash = fnv1a64(request.body_hash, event.data)
                if len(request.body_start) < 4096:
                    request.body_start += event.data[: 4096 - len(request.body_start)]
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            request = self.requests.get(event.stream_id)
            if request is not None:
                request.trailers = [[n, v] for n, v in event.headers]
            if event.stream_ended:
                self.answer(event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id in self.requests:
                self.answer(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.requests.pop(event.stream_id, None)
            waiter = self.window_open.get(event.stream_id)
            if waiter:
                waiter.set()
        elif isinstance(event, h2.events.WindowUpdated):
            for waiter in self.window_open.values():
                waiter.set()

    def answer(self, stream_id):
        request = self.requests.get(stream_id)
        if request is None or getattr(request, "answered", False):
            return
        request.answered = True
        pseudo = {n: v for n, v in request.headers if n.startswith(":")}
        path = pseudo.get(":path", "")
        if path == "/__h2/stats":
            body = json.dumps({"connections": self.stats.accepted, "open": self.stats.open}).encode()
            self.respond(stream_id, body, [])
        elif path.startswith("/__h2/delay/"):
            delay = min(int(path.split("/")[3] or 0), MAX_DELAY_MS) / 1000
            asyncio.get_event_loop().call_later(delay, self.echo, stream_id, request)
        elif path.startswith("/__h2/bytes/"):
            size = min(int(path.split("/")[3]), MAX_BYTES)
            asyncio.ensure_future(self.send_bytes(stream_id, size))
        elif path == "/__h2/reset":
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif path == "/__h2/garbage":
            self.flush()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + b"\x00" * 64)
        elif path.startswith("/__h2/refuse-once/") and path not in self.stats.refused_keys:
            self.stats.refused_keys.add(path)
            self.conn.close_connection(last_stream_id=max(stream_id - 2, 0))
            self.flush()
            self.transport.close()
        else:
            self.echo(stream_id, request)
        self.flush()

    def echo(self, stream_id, request):
        if stream_id not in self.requests or self.transport.is_closing():
            return
        pseudo = {n: v for n, v in request.headers if n.startswith(":")}
        headers = [[n, v] for n, v in request.headers if not n.startswith(":")]
        description = {
            "upstream": self.name,
            "method": pseudo.get(":method"),
            "scheme": pseudo.get(":scheme"),
            "authority": pseudo.get(":authority"),
            "path": pseudo.get(":path"),
            "headers": headers,
            "body_bytes": request.body_bytes,
            "body_fnv1a64": "%016x" % request.body_hash,
            "body": bytes(request.body_start).decode("utf-8", "replace"),
            "trailers": request.trailers,
            "connection": self.number,
            "stream_id": stream_id,
        }
        body = (json.dumps(description) + "\n").encode()
        wants_trailers = any(n == "x-echo-trailers" and v == "yes" for n, v in request.headers)
        trailers = []
        if wants_trailers:
            trailers = [("x-upstream-trailer", self.name), ("x-body-fnv1a64", "%016x" % request.body_hash)]
        self.respond(stream_id, body, trailers)
        self.flush()

    def respond(self, stream_id, body, trailers):
        headers = [(":status", "200"), ("content-type", "application/json"), ("x-echo-upstream", self.name)]
        if not trailers:
            headers.append(("content-length", str(len(body))))
        self.conn.send_headers(stream_id, headers)
        asyncio.ensure_future(self.send_body(stream_id, body, trailers))

    async def send_body(self, stream_id, body, trailers):
        await self.send_data(stream_id, body, end=not trailers)
        if trailers and stream_id in self.requests and not self.transport.is_closing():
            self.conn.send_headers(stream_id, trailers, end_stream=True)
            self.flush()
        self.requests.pop(stream_id, None)

    async def send_bytes(self, stream_id, size):
        headers = [(":status", "200"), ("content-type", "application/octet-stream"),
                   ("x-echo-upstream", self.name), ("content-length", str(size))]
        self.conn.send_headers(stream_id, headers)
        self.flush()
        pattern = bytes(ord("a") + i % 26 for i in range(26 * 2048))
        sent = 0
        while sent < size:
            # Whole multiples of 26, so the pattern goes on across chunks.
            piece = pattern[: min(len(pattern), size - sent)]
            await self.send_data(stream_id, piece, end=sent + len(piece) >= size)
            sent += len(piece)
            if stream_id not in self.requests:
                return
        self.requests.pop(stream_id, None)

    async def send_data(self, stream_id, data, end):
        offset = 0
        while True:
            if stream_id not in self.requests or self.transport.is_closing():
                return
            remaining = len(data) - offset
            window = self.conn.local_flow_control_window(stream_id)
            size = min(remaining, window, self.conn.max_outbound_frame_size)
            if size > 0 or remaining == 0:
                last = end and offset + size == len(data)
                self.conn.send_data(stream_id, data[offset : offset + size], end_stream=last)
                self.flush()
                offset += size
                if offset == len(data):
                    return
                continue
            waiter = asyncio.Event()
            self.window_open[stream_id] = waiter
            await waiter.wait()
            self.window_open.pop(stream_id, None)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--max-streams", type=int, default=0)
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("h2_echo.py binds to loopback only")

    loop = asyncio.new_event_loop()
    stats = Stats()
    server = loop.run_until_complete(
        loop.create_server(lambda: EchoProtocol(args.name, stats, args.max_streams), "127.0.0.1", int(port)))
    bound = server.sockets[0].getsockname()
    print("listening %s:%d" % (bound[0], bound[1]), flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
