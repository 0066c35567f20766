"""What the threaded test peers here share: a listener on 127.0.0.1 that
prints where it listens and serves each connection on a thread of its own."""

import signal
import socket
import sys
import threading


def serve_forever(serve, port=0, backlog=64, extra_args=()):
    """Calls serve(conn, *extra_args) on a new thread for each connection."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(backlog)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The harness learns the port from this line (ListeningPeer).
    print("listening 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,) + tuple(extra_args), daemon=True).start()
