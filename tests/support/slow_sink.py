#!/usr/bin/env python3
"""An upstream that reads request bodies slowly, for backpressure tests.

For each HTTP/1.1 request with a Content-Length or chunked body, it waits
PAUSE seconds (second argument, default 0) after the head, then reads the
body at about RATE bytes per second (first argument, default 16 MiB/s), and
answers 200 with a JSON body {"body_bytes": N}. Prints
"listening HOST:PORT" once ready; stops on SIGTERM.
"""
import json
import sys
import time

from threaded_listener import serve_forever


def read_exact_head(conn, buffer):
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None, buffer
        buffer += chunk
    head, rest = buffer.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def serve(conn, rate, pause):
    with conn:
        buffer = b""
        while True:
            head, buffer = read_exact_head(conn, buffer)
            if head is None:
                return
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            received = len(buffer)
            buffer = b""
            time.sleep(pause)
            started = time.monotonic()
            while received < length:
                chunk = conn.recv(min(65536, length - received))
                if not chunk:
                    return
                received += len(chunk)
                # Sleep so that the average stays at `rate` bytes per second.
                ahead = received / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            body = json.dumps({"body_bytes": received}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))


def main():
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 16 * 1024 * 1024
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    serve_forever(serve, extra_args=(rate, pause))


if __name__ == "__main__":
    main()
