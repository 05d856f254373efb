"""A proxyless gRPC client process: resolves ``xds:///TARGET`` through GRPC_XDS_BOOTSTRAP and
calls the harness's Who/Name RPC in a loop, printing one line per call:
``OK <server name>`` or ``ERR <status code> <details>``.

Run as a script (``python grpc_client.py TARGET [interval_s]``); grpc reads the bootstrap env
var once at import, which is why it lives in its own process.
"""

from __future__ import annotations

import sys
import time

import grpc

GRPC_PATH = "/meshctl.test.Who/Name"  # kept in step with upstream.GRPC_PATH (no package import here)


def main() -> None:
    target = sys.argv[1]
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    channel = grpc.insecure_channel(f"xds:///{target}")
    call = channel.unary_unary(GRPC_PATH)
    while True:
        try:
            reply = call(b"", timeout=2.0)
            line = f"OK {reply.decode()}"
        except grpc.RpcError as exc:
            details = (exc.details() or "").replace("\n", " ")[:300]
            line = f"ERR {exc.code().name} {details}"
        print(line, flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    main()
