"""Opens COUNT real ``GreengrassCoreIPCClientV2`` connections one after another and keeps them
(for the lite profile's client limit); prints one JSON line: how many connected, and the
exception of the first that did not. Waits for a line on stdin before closing them.

Run with the Nucleus environment: ``python -m tests.core.lite_clients COUNT``.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(argv: list[str]) -> int:
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    clients: list[Any] = []
    error = None
    for _ in range(int(argv[0])):
        try:
            client = GreengrassCoreIPCClientV2()
            client.get_configuration(key_path=[])  # a round trip on the new connection
        except Exception as exc:  # the limit: recorded, the others kept
            error = f"{type(exc).__name__}: {exc}"
            break
        clients.append(client)
    print(json.dumps({"connected": len(clients), "error": error}), flush=True)
    sys.stdin.readline()
    for client in clients:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
