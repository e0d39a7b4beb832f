"""Tests for the queue pump's ESM decisions.

    python3 -m unittest discover -s infra/local -p 'test_*.py'
"""
from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import queue_pump  # noqa: E402


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
