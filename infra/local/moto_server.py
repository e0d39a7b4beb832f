"""moto's server with DynamoDB's write atomicity.

DynamoDB applies a conditional write atomically: the condition is evaluated and every
action of the update expression applied as one step, and no read sees half of it. moto
does neither: it checks the condition, then mutates the stored item one action at a
time, in the request's thread, while other threads serve reads and writes of the same
item. Under load a reader can see `status = stored` before `video` is set, and two
conditional claims can both pass their condition. (Seen in the load suite; reproduced
with `sys.setswitchinterval(1e-6)`: about one torn read in two thousand.)

This wrapper serialises the DynamoDB and DynamoDB Streams requests (each runs
to completion, its response body included, before the next starts) and leaves every
other service concurrent: SQS long polls must not hold up the tables.

Usage: python3 moto_server.py -H 127.0.0.1 -p 8000
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Callable, Iterable

# The services whose requests are serialised, by the prefix of their `X-Amz-Target`
# header (`DynamoDB_20120810.UpdateItem`, `DynamoDBStreams_20120810.GetRecords`).
SERIALISED_TARGETS = ("DynamoDB",)


class AtomicTables:
    """WSGI middleware: one DynamoDB request at a time, everything else untouched."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(SERIALISED_TARGETS):
            return self.app(environ, start_response)
        with self.lock:
            # The body is produced inside the lock too: moto serialises the item into it.
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)

    import os

    os.environ.setdefault("MOTO_PORT", str(args.port))
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, AtomicTables(app), threaded=True)


if __name__ == "__main__":
    main()
