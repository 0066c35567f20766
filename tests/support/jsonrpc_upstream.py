#!/usr/bin/env python3
"""A JSON-RPC 2.0 upstream for the integration tests.

Every call with an id is answered with a result that names this upstream, the
method and the params; the responses to a batch come back in reverse order, so
that the proxy has to match them to calls by id. A few methods misbehave on
purpose, whatever their method, when their params (an object) say so:

  "garbage": true  the whole request is answered with an HTML page
  "sleep_ms": N    the answer waits N milliseconds (at most 10 s)

Every request is recorded; GET /__received answers the records as a JSON array
of {"method", "target", "headers": [[name, value], ...], "body", "trailers"}.

usage: jsonrpc_upstream.py --name NAME --listen 127.0.0.1:PORT  (PORT 0: any)
Prints "listening HOST:PORT" once listening. Binds to loopback only.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_SLEEP_MS = 10000
MAX_BODY = 64 << 20


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Upstream:
    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.received = []

    def record(self, entry):
        with self.lock:
            self.received.append(entry)

    def records(self):
        with self.lock:
            return list(self.received)

    def answer(self, call):
        """The response to one element, or None for a notification."""
        if not isinstance(call, dict) or call.get("jsonrpc") != "2.0" or not isinstance(call.get("method"), str):
            return {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}
        if "id" not in call:
            return None
        result = {"upstream": self.name, "method": call["method"], "params": call.get("params")}
        return {"jsonrpc": "2.0", "result": result, "id": call["id"]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "jsonrpc-upstream"

    def log_message(self, format, *args):
        pass

    def read_body(self):
        """The body and the trailer lines of a chunked one."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while len(body) <= MAX_BODY:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    trailers = []
                    for _ in range(100):
                        line = self.rfile.readline()
                        if line in (b"\r\n", b"\n", b""):
                            break
                        trailers.append(line.decode("latin-1").rstrip("\r\n"))
                    return body, trailers
                body += self.rfile.read(size)
                self.rfile.readline()
            raise ValueError("body too large")
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length), []

    def send(self, status, body, content_type="application/json"):
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def do_GET(self):
        upstream = self.server.upstream
        if self.path == "/__received":
            self.send(200, compact(upstream.records()).encode())
            return
        self.send(404, b'{"error":"not found"}')

    def do_POST(self):
        upstream = self.server.upstream
        body, trailers = self.read_body()
        upstream.record({
            "method": self.command,
            "target": self.path,
            "headers": [[name, value] for name, value in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
            "trailers": trailers,
        })

        try:
            request = json.loads(body)
        except ValueError:
            error = {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}
            self.send(200, compact(error).encode())
            return

        calls = request if isinstance(request, list) else [request]
        controls = [call["params"] for call in calls if isinstance(call, dict) and isinstance(call.get("params"), dict)]
        if any(params.get("garbage") is True for params in controls):
            self.send(200, b"<html>not json-rpc</html>", "text/html")
            return
        for params in controls:
            time.sleep(min(int(params.get("sleep_ms", 0)), MAX_SLEEP_MS) / 1000.0)

        answers = [answer for answer in map(upstream.answer, calls) if answer is not None]
        if not isinstance(request, list):
            if answers:
                self.send(200, compact(answers[0]).encode())
            else:
                self.send(204, b"")
            return
        if not answers:
            self.send(204, b"")
            return
        self.send(200, compact(list(reversed(answers))).encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", required=True)
    options = parser.parse_args()
    host, _, port = options.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        parser.error("--listen must be on loopback (127.0.0.1)")

    # socketserver listens with a queue of 5; the parts of a split batch
    # arrive at once, and a dropped SYN waits a second to be sent again.
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    server.upstream = Upstream(options.name)
    print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
