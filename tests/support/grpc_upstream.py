#!/usr/bin/python3
"""A gRPC upstream for the integration tests, without generated code: the
methods of service strangler.test.Echo take and give raw bytes.

  Unary   answers "NAME:" + the request. A request "status:CODE:TEXT" is
          answered with that status code (a number) and message instead.
  Stream  (server streaming) a request "COUNT:TEXT[:DELAY_MS]" is answered
          with COUNT messages "NAME:I:TEXT", DELAY_MS apart.
  Chat    (bidirectional) each request message is answered "NAME:" + it.

Every call sends initial metadata x-upstream: NAME and trailing metadata
x-upstream-trailer: NAME, x-peer: the client's address as gRPC sees it (one
per TCP connection) and x-tenant-seen: the x-tenant metadata received.

usage: grpc_upstream.py --name NAME [--listen 127.0.0.1:PORT] [--max-streams N]
Prints "listening HOST:PORT" once listening. Binds to loopback only.
Needs Debian's python3-grpcio (hence /usr/bin/python3).
"""

import argparse
import sys
import time
from concurrent import futures

import grpc

MAX_MESSAGES = 1000
MAX_DELAY_MS = 5000


class Echo:
    def __init__(self, name):
        self.name = name

    def begin(self, context):
        context.send_initial_metadata((("x-upstream", self.name),))
        tenant = dict(context.invocation_metadata()).get("x-tenant", "")
        context.set_trailing_metadata((("x-upstream-trailer", self.name), ("x-peer", context.peer()),
                                       ("x-tenant-seen", tenant)))

    def unary(self, request, context):
        self.begin(context)
        if request.startswith(b"status:"):
            _, code, text = request.decode().split(":", 2)
            status = next(s for s in grpc.StatusCode if s.value[0] == int(code))
            context.set_code(status)
            context.set_details(text)
            return b""
        return self.name.encode() + b":" + request

    def stream(self, request, context):
        self.begin(context)
        parts = request.decode().split(":")
        count = min(int(parts[0]), MAX_MESSAGES)
        delay = min(int(parts[2]), MAX_DELAY_MS) / 1000 if len(parts) > 2 else 0
        for i in range(count):
            if i and delay:
                time.sleep(delay)
            yield ("%s:%d:%s" % (self.name, i, parts[1])).encode()

    def chat(self, requests, context):
        self.begin(context)
        for request in requests:
            yield self.name.encode() + b":" + request


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--max-streams", type=int, default=0)
    args = parser.parse_args()
    if not args.listen.startswith("127.0.0.1:"):
        sys.exit("grpc_upstream.py binds to loopback only")

    options = [("grpc.max_concurrent_streams", args.max_streams)] if args.max_streams else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=options)
    echo = Echo(args.name)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(echo.unary),
        "Stream": grpc.unary_stream_rpc_method_handler(echo.stream),
        "Chat": grpc.stream_stream_rpc_method_handler(echo.chat),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("strangler.test.Echo", handlers),))
    port = server.add_insecure_port(args.listen)
    server.start()
    print("listening 127.0.0.1:%d" % port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
