#!/usr/bin/env python3
"""Opens many idle HTTP/1.1 keep-alive connections to one loopback server.

Each connection sends one small GET, reads the whole response and then stays
open and silent, as a browser's spare connection would. Prints "opened N
failed M ..." once every connection has been tried, then holds them until
SIGTERM or SIGINT arrives or --hold seconds pass, whichever comes first. Before
it exits it prints "closed_by_peer K": how many the server had closed by then.
"""

import argparse
import signal
import socket
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--path", default="/legacy/idle")
    parser.add_argument("--hold", type=float, default=60.0, help="longest hold, in seconds")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="longest time spent opening, in seconds")
    return parser.parse_args()


def read_response(sock):
    """Reads one response framed by Content-Length; returns False on a bad one."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if not status_line.startswith(b"HTTP/1.1 2"):
        return False
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        return False
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


def open_one(port, request):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(request)
        if read_response(sock):
            return sock
    except OSError:
        pass
    sock.close()
    return None


def main():
    args = parse_args()
    # Blocked so that sigtimedwait, not the default action, takes them.
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
    request = (f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
               "User-Agent: strangler-bench-idle\r\n\r\n").encode()
    held = []
    failed = 0
    started = time.monotonic()
    for _ in range(args.count):
        if time.monotonic() - started > args.deadline:
            failed += args.count - len(held) - failed
            break
        try:
            sock = open_one(args.port, request)
        except OSError:
            sock = None
        if sock is None:
            failed += 1
        else:
            held.append(sock)
    print(f"opened {len(held)} failed {failed} seconds {time.monotonic() - started:.1f}", flush=True)

    # Hold until the caller signals, or the hold time ends.
    signal.sigtimedwait([signal.SIGTERM, signal.SIGINT], args.hold)
    closed_by_peer = 0
    for sock in held:
        try:
            sock.setblocking(False)
            if sock.recv(1) == b"":
                closed_by_peer += 1
        except BlockingIOError:
            pass
        except OSError:
            closed_by_peer += 1
        sock.close()
    print(f"closed_by_peer {closed_by_peer}", flush=True)


if __name__ == "__main__":
    main()
