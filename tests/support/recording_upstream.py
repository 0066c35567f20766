#!/usr/bin/env python3
"""An HTTP/1.1 upstream that records what happened to every request, for
tests that must show a request was cancelled rather than left running.

Each request (head, then a Content-Length or chunked body) is answered 200
with {"path", "body_bytes"}; a path starting /hold/MS/ is answered only MS
milliseconds after its body ended; one starting /early/ gets the head and a
first chunk of its answer before its body is read, and the last chunk after.
A request whose connection closes before its answer is recorded as aborted.

GET /__record answers with the records, one per request in arrival order:
{"path", "body_bytes", "body_complete", "answered", "aborted"}.
Prints "listening HOST:PORT" once ready; stops on SIGTERM.
"""
import json
import select
import socket
import threading
import time

from threaded_listener import serve_forever

records = []
records_lock = threading.Lock()


class Closed(Exception):
    pass


class Reader:
    def __init__(self, conn):
        self.conn = conn
        self.buffer = b""

    def more(self):
        chunk = self.conn.recv(65536)
        if not chunk:
            raise Closed()
        self.buffer += chunk

    def line(self):
        while b"\r\n" not in self.buffer:
            self.more()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def take(self, limit):
        if not self.buffer:
            self.more()
        piece, self.buffer = self.buffer[:limit], self.buffer[limit:]
        return len(piece)


def read_body(reader, head_fields, record):
    if head_fields.get("transfer-encoding", "").lower().endswith("chunked"):
        while True:
            size = int(reader.line().split(b";")[0], 16)
            if size == 0:
                while reader.line():
                    pass
                return
            left = size
            while left:
                taken = reader.take(left)
                left -= taken
                record["body_bytes"] += taken
            reader.line()
    left = int(head_fields.get("content-length", "0"))
    while left:
        taken = reader.take(left)
        left -= taken
        record["body_bytes"] += taken


def hold(conn, seconds):
    """Waits `seconds`; raises Closed if the peer closes meanwhile."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        readable, _, _ = select.select([conn], [], [], left)
        if readable:
            if not conn.recv(1, socket.MSG_PEEK):
                raise Closed()
            time.sleep(min(left, 0.05))  # bytes of a next request wait their turn


def answer_records(conn):
    with records_lock:
        body = json.dumps(records).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))


def serve(conn):
    reader = Reader(conn)
    record = None
    try:
        while True:
            start = reader.line()
            fields = {}
            while True:
                line = reader.line()
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                fields[name.strip().lower()] = value.strip()
            path = start.decode("latin-1").split(" ")[1]
            if path == "/__record":
                answer_records(conn)
                continue
            record = {"path": path, "body_bytes": 0, "body_complete": False, "answered": False, "aborted": False}
            with records_lock:
                records.append(record)
            early = path.startswith("/early/")
            if early:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n6\r\nearly\n\r\n")
            read_body(reader, fields, record)
            record["body_complete"] = True
            if early:
                conn.sendall(b"5\r\nlate\n\r\n0\r\n\r\n")
                record["answered"] = True
                record = None
                continue
            if path.startswith("/hold/"):
                hold(conn, int(path.split("/")[2]) / 1000)
            body = json.dumps({"path": path, "body_bytes": record["body_bytes"]}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            record["answered"] = True
            record = None
    except (Closed, ConnectionError):
        if record is not None:
            record["aborted"] = True
    finally:
        conn.close()


def main():
    serve_forever(serve, backlog=128)


if __name__ == "__main__":
    main()
