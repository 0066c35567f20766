#!/usr/bin/python3
"""A gRPC client for the integration tests: calls one method with raw bytes
and prints what came back as one JSON object per call, in call order:

  {"messages": [...], "initial_metadata": [[k, v], ...],
   "trailing_metadata": [[k, v], ...], "code": "OK", "details": ""}

usage: grpc_client.py --target 127.0.0.1:PORT --method /strangler.test.Echo/Unary
         --kind unary|stream|chat [--message M ...] [--metadata K=V ...]
         [--calls N] (N calls at the same time on one channel)
         [--timeout S]
Needs Debian's python3-grpcio (hence /usr/bin/python3).
"""

import argparse
import json
import sys
from concurrent import futures

import grpc


def pairs(metadata):
    return [[key, value if isinstance(value, str) else value.decode("latin-1")] for key, value in metadata or ()]


def call_once(channel, args, metadata):
    result = {"messages": [], "initial_metadata": [], "trailing_metadata": [], "code": "", "details": ""}
    messages = [m.encode() for m in args.message]
    try:
        if args.kind == "unary":
            method = channel.unary_unary(args.method)
            response, call = method.with_call(messages[0] if messages else b"", metadata=metadata,
                                              timeout=args.timeout)
            result["messages"].append(response.decode())
        else:
            if args.kind == "stream":
                call = channel.unary_stream(args.method)(messages[0] if messages else b"", metadata=metadata,
                                                         timeout=args.timeout)
            else:
                call = channel.stream_stream(args.method)(iter(messages), metadata=metadata, timeout=args.timeout)
            for response in call:
                result["messages"].append(response.decode())
        result["initial_metadata"] = pairs(call.initial_metadata())
        result["trailing_metadata"] = pairs(call.trailing_metadata())
        result["code"] = call.code().name
        result["details"] = call.details() or ""
    except grpc.RpcError as error:
        result["code"] = error.code().name
        result["details"] = error.details() or ""
        result["initial_metadata"] = pairs(error.initial_metadata())
        result["trailing_metadata"] = pairs(error.trailing_metadata())
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--kind", choices=("unary", "stream", "chat"), default="unary")
    parser.add_argument("--message", action="append", default=[])
    parser.add_argument("--metadata", action="append", default=[])
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()
    if not args.target.startswith("127.0.0.1:"):
        sys.exit("grpc_client.py talks to loopback only")
    metadata = tuple(tuple(item.split("=", 1)) for item in args.metadata)

    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(args.target, options=options) as channel:
        with futures.ThreadPoolExecutor(max_workers=max(args.calls, 1)) as pool:
            calls = [pool.submit(call_once, channel, args, metadata) for _ in range(args.calls)]
            for call in calls:
                print(json.dumps(call.result()), flush=True)


if __name__ == "__main__":
    main()
