#!/usr/bin/python3
"""A minimal HTTP/2 client (prior knowledge) for the integration tests: one
request with a body and, unlike curl, request trailers. Prints one JSON
object: {"status", "headers": [[n, v], ...], "body", "trailers": [[n, v], ...]}.

usage: h2_client.py --port PORT --path PATH [--body TEXT] [--header N=V ...]
         [--trailer N=V ...]
Talks to 127.0.0.1 only. Needs Debian's python3-h2 (hence /usr/bin/python3).
"""

import argparse
import json
import socket

import h2.config
import h2.connection
import h2.events


def pair(text):
    name, value = text.split("=", 1)
    return (name, value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", default="")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--trailer", action="append", default=[])
    args = parser.parse_args()

    sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    headers = [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % args.port),
               (":path", args.path)] + [pair(h) for h in args.header]
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, headers)
    conn.send_data(stream_id, args.body.encode())
    if args.trailer:
        conn.send_headers(stream_id, [pair(t) for t in args.trailer], end_stream=True)
    else:
        conn.end_stream(stream_id)
    sock.sendall(conn.data_to_send())

    result = {"status": 0, "headers": [], "body": "", "trailers": []}
    body = bytearray()
    done = False
    while not done:
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                result["headers"] = [[n, v] for n, v in event.headers]
                result["status"] = int(dict(event.headers)[":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                result["trailers"] = [[n, v] for n, v in event.headers]
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        sock.sendall(conn.data_to_send())
    result["body"] = body.decode("utf-8", "replace")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
