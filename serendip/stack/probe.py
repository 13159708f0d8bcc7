"""Health probes for containers: ``python -m serendip.stack.probe grpc HOST:PORT [SERVICE]`` or
``python -m serendip.stack.probe http URL``; exit 0 when healthy, 1 otherwise (compose healthchecks)."""

from __future__ import annotations

import sys

from serendip.stack.health import grpc_serving, http_ok


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "grpc":
        ok = grpc_serving(args[1], args[2] if len(args) > 2 else "", timeout_s=3.0)
    elif len(args) == 2 and args[0] == "http":
        ok = http_ok(args[1], timeout_s=3.0)
    else:
        print("usage: probe grpc HOST:PORT [SERVICE] | probe http URL", file=sys.stderr)
        return 2
    print("healthy" if ok else "unhealthy")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
