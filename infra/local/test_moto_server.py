"""Tests for moto_server.py: DynamoDB requests run one at a time, other services do not.

    python3 -m unittest discover -s infra/local -p 'test_*.py'
"""
from __future__ import annotations

import sys
import threading
import time
import unittest
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from moto_server import AtomicTables  # noqa: E402


class SlowApp:
    """A WSGI app that holds each request for a while and records how many overlap."""

    def __init__(self) -> None:
        self.running = 0
        self.most = {"dynamodb": 0, "other": 0}
        self.guard = threading.Lock()
        self.closed = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        kind = "dynamodb" if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB") else "other"
        with self.guard:
            self.running += 1
            self.most[kind] = max(self.most[kind], self.running)
        start_response("200 OK", [("Content-Type", "application/json")])
        app = self

        class Body:
            def __iter__(self):  # the body is produced while still "running", like moto's
                time.sleep(0.05)
                yield b'{"part":'
                yield b'1}'
                with app.guard:
                    app.running -= 1

            def close(self) -> None:
                app.closed += 1

        return Body()


def call(app: Any, target: str | None) -> bytes:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/"}
    if target:
        environ["HTTP_X_AMZ_TARGET"] = target
    return b"".join(app(environ, lambda *_: None))


class AtomicTablesTest(unittest.TestCase):
    def run_concurrently(self, targets: list[str | None]) -> tuple[SlowApp, list[bytes]]:
        inner = SlowApp()
        app = AtomicTables(inner)
        bodies: list[bytes] = []
        threads = [threading.Thread(target=lambda t=t: bodies.append(call(app, t))) for t in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return inner, bodies

    def test_table_and_stream_requests_never_overlap(self) -> None:
        targets = ["DynamoDB_20120810.UpdateItem", "DynamoDB_20120810.GetItem",
                   "DynamoDBStreams_20120810.GetRecords"] * 3
        inner, bodies = self.run_concurrently(targets)
        self.assertEqual(inner.most["dynamodb"], 1)
        self.assertEqual(bodies, [b'{"part":1}'] * len(targets), "whole bodies pass through")
        self.assertEqual(inner.closed, len(targets), "each response is closed")

    def test_other_services_stay_concurrent(self) -> None:
        # SQS long polls (JSON protocol, no DynamoDB target) and S3/query requests (none).
        inner, _ = self.run_concurrently(["AmazonSQS.ReceiveMessage", None, "AmazonSQS.SendMessage", None])
        self.assertGreater(inner.most["other"], 1)


if __name__ == "__main__":
    unittest.main()
