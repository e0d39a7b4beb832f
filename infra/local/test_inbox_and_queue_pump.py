"""Tests for the notification inbox's verifier and the queue pump's ESM decisions.

    python3 -m unittest discover -s infra/local -p 'test_*.py'
"""
from __future__ import annotations

import json
import sys
import threading
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inbox  # noqa: E402
import queue_pump  # noqa: E402

# The Standard Webhooks specification's test vector (as in shared/src/domain/notify/signing.rs).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HEADERS = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
           "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
BODY = b'{"test": 2432232314}'
NOW = 1614265330


class VerifyTest(unittest.TestCase):
    def test_the_specification_vector_passes_and_any_change_fails(self) -> None:
        self.assertEqual(inbox.verify(SECRET, HEADERS, BODY, NOW), "valid")
        self.assertEqual(inbox.verify(SECRET, HEADERS, BODY + b" ", NOW), "invalid")
        other = {**HEADERS, "webhook-id": "msg_other"}
        self.assertEqual(inbox.verify(SECRET, other, BODY, NOW), "invalid")
        self.assertEqual(inbox.verify(SECRET, HEADERS, BODY, NOW + 301), "stale_timestamp")
        rotated = {**HEADERS, "webhook-signature": "v1,bm90IGl0 " + HEADERS["webhook-signature"]}
        self.assertEqual(inbox.verify(SECRET, rotated, BODY, NOW), "valid", "any v1 entry may match")
        self.assertEqual(inbox.verify(SECRET, {}, BODY, NOW), "unsigned")


class InboxServerTest(unittest.TestCase):
    def test_scripted_answers_then_200_and_everything_recorded(self) -> None:
        server = inbox.http.server.ThreadingHTTPServer(("127.0.0.1", 0), inbox.handler_for(inbox.Inbox(None)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            def call(method: str, path: str, body: bytes = b"") -> tuple[int, bytes, dict[str, str]]:
                req = urllib.request.Request(base + path, data=body or None, method=method)
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        return r.status, r.read(), dict(r.headers)
                except urllib.error.HTTPError as e:
                    return e.code, e.read(), dict(e.headers)

            script = [{"status": 503}, {"status": 429, "headers": {"Retry-After": "7"}}]
            self.assertEqual(call("PUT", "/_script/a", json.dumps(script).encode())[0], 204)
            self.assertEqual(call("POST", "/hooks/a", b"1")[0], 503)
            status, _, headers = call("POST", "/hooks/a", b"2")
            self.assertEqual((status, headers.get("Retry-After")), (429, "7"))
            self.assertEqual(call("POST", "/hooks/a", b"3")[0], 200)
            only_b = [{"status": 500, "match": "task-b"}]
            self.assertEqual(call("PUT", "/_script/m", json.dumps(only_b).encode())[0], 204)
            self.assertEqual(call("POST", "/hooks/m", b"task-a")[0], 200, "not matched: 200")
            self.assertEqual(call("POST", "/hooks/m", b"task-b")[0], 500)
            self.assertEqual(call("POST", "/hooks/m", b"task-b")[0], 200, "used up")
            got = json.loads(call("GET", "/_requests/a")[1])
            self.assertEqual([g["body"] for g in got], ["1", "2", "3"])
            self.assertEqual({g["signature"] for g in got}, {"no_secret"})
            self.assertEqual(call("POST", "/elsewhere", b"x")[0], 404)
        finally:
            server.shutdown()
            server.server_close()


class QueuePumpTest(unittest.TestCase):
    RECORDS = [{"messageId": "a"}, {"messageId": "b"}, {"messageId": "c"}]

    def ids(self, *answer) -> list[str]:
        return [r["messageId"] for r in queue_pump.to_delete(*answer, self.RECORDS)]

    def test_what_the_esm_deletes(self) -> None:
        self.assertEqual(self.ids(200, {}, b'{"batchItemFailures":[]}'), ["a", "b", "c"])
        self.assertEqual(self.ids(200, {}, b""), ["a", "b", "c"])
        self.assertEqual(self.ids(200, {}, b'{"batchItemFailures":[{"itemIdentifier":"b"}]}'), ["a", "c"])
        # Function errors, unknown or malformed identifiers, unreadable answers: nothing.
        self.assertEqual(self.ids(200, {"X-Amz-Function-Error": "Unhandled"}, b"{}"), [])
        self.assertEqual(self.ids(502, {}, b"{}"), [])
        self.assertEqual(self.ids(200, {}, b'{"batchItemFailures":[{"itemIdentifier":"zz"}]}'), [])
        self.assertEqual(self.ids(200, {}, b'{"batchItemFailures":[{}]}'), [])
        self.assertEqual(self.ids(200, {}, b"not json"), [])
        self.assertEqual(self.ids(200, {}, b'{"errorType":"E","errorMessage":"m"}'), [])

    def test_records_have_lambdas_shape(self) -> None:
        r = queue_pump.to_lambda_record({"MessageId": "m", "ReceiptHandle": "h", "Body": "{}", "MD5OfBody": "x",
                                         "Attributes": {"ApproximateReceiveCount": "2", "Other": "no"}},
                                        "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")
        self.assertEqual(r["eventSource"], "aws:sqs")
        self.assertEqual(r["attributes"], {"ApproximateReceiveCount": "2"})
        self.assertEqual((r["messageId"], r["receiptHandle"], r["body"]), ("m", "h", "{}"))


if __name__ == "__main__":
    unittest.main()
