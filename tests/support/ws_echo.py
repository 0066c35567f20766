#!/usr/bin/env python3
"""A minimal WebSocket-style echo upstream for the tunnel tests.

It answers an HTTP/1.1 Upgrade: websocket handshake with 101 and a correct
Sec-WebSocket-Accept, then echoes every byte it receives until the peer
closes. A request without the handshake gets 400 with a JSON body. Prints
"listening HOST:PORT" once ready; stops on SIGTERM.
"""
import base64
import hashlib
import sys

from threaded_listener import serve_forever

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None, b""
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def serve(conn):
    with conn:
        head, rest = read_head(conn)
        if head is None:
            return
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        if headers.get("upgrade", "").lower() != "websocket" or not key:
            body = b'{"error":"not a websocket handshake"}'
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
        if rest:
            conn.sendall(rest)
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            conn.sendall(chunk)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    serve_forever(serve, port=port)


if __name__ == "__main__":
    main()
