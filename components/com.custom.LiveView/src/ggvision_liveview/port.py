"""``python -m ggvision_liveview.port [PORT] [--host H] [--tries N]``: the first free TCP port from
PORT on (default 8080, 20 tries), printed on stdout; a note on stderr when PORT itself is taken.

``make run`` uses it so that a busy 8080 moves the live view to the next free port (and says so)
instead of failing. The component itself never moves: a taken port is a start error there, since
a deployed live view's address is configuration that people and scrapers rely on.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence


def is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def first_free(host: str, port: int, tries: int) -> int | None:
    for candidate in range(port, min(port + tries, 65536)):
        if is_free(host, candidate):
            return candidate
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ggvision_liveview.port", description=__doc__)
    parser.add_argument("port", nargs="?", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args(argv)
    found = first_free(args.host, args.port, args.tries)
    if found is None:
        last = args.port + args.tries - 1
        print(f"live view: ports {args.port}-{last} on {args.host} are all taken", file=sys.stderr)
        return 1
    if found != args.port:
        print(f"live view: port {args.port} is taken; using {found}", file=sys.stderr)
    print(found)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
