"""Tests for the local stream pump and template model.

    python3 -m unittest discover -s infra/local -p 'test_*.py'

The unit tests use the real template's FilterCriteria on records shaped like moto's
`get_records` output; the integration test runs moto (moto_server.py) on a free 127.0.0.1 port and a
tiny HTTP server standing in for `cargo lambda watch`, and asserts exactly what was delivered.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import stream_pump as sp  # noqa: E402
import template_model  # noqa: E402

logging.getLogger("stream-pump").addHandler(logging.NullHandler())  # keep test output readable

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/music-video-tasks/stream/2026-01-01T00:00:00.000"
_seq = iter(range(1100000000017454423009, 1100000000017454429999))


def item(task_id: str, status: str, **extra: Any) -> dict[str, Any]:
    out = {"task_id": {"S": task_id}, "status": {"S": status}, "callback_count": {"N": "1"},
           "video_url": {"S": "https://cdn.example/v.mp4"}, "updated_at": {"S": "2026-01-01T00:00:00Z"}}
    if status in ("received", "downloading"):
        out["open_status"] = {"S": status}
    out.update(extra)
    return out


def raw_record(event: str, new: dict | None = None, old: dict | None = None) -> dict[str, Any]:
    """A stream record as boto3 returns it from moto's get_records."""
    img = new or old or {}
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": dt.datetime(2026, 1, 1, 12, 0, 0, 630000, tzinfo=dt.timezone.utc),
        "Keys": {"task_id": img["task_id"]},
        "SequenceNumber": str(next(_seq)),
        "SizeBytes": 200,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        ddb["NewImage"] = new
    if old is not None:
        ddb["OldImage"] = old
    return {"eventID": "e1", "eventName": event, "eventVersion": "1.0", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1", "dynamodb": ddb}


def record(event: str, new: dict | None = None, old: dict | None = None) -> dict[str, Any]:
    return sp.to_lambda_record(raw_record(event, new, old), STREAM_ARN, "us-east-1")


class TemplateModelTest(unittest.TestCase):
    def test_table_args_come_from_the_template(self) -> None:
        args = template_model.tasks_table_create_args("t1")
        self.assertEqual(args["TableName"], "t1")
        self.assertEqual(args["StreamSpecification"]["StreamEnabled"], True)
        self.assertIn(args["StreamSpecification"]["StreamViewType"], ("NEW_AND_OLD_IMAGES", "NEW_IMAGE"))
        self.assertIn({"AttributeName": "task_id", "KeyType": "HASH"}, args["KeySchema"])
        ttl = template_model.tasks_table_ttl_args("t1")
        self.assertEqual(ttl["TableName"], "t1")
        self.assertTrue(ttl["TimeToLiveSpecification"]["Enabled"])

    def test_event_source(self) -> None:
        esm = template_model.ingest_event_source()
        self.assertGreaterEqual(len(esm["filters"]), 1)
        self.assertIsInstance(esm["BatchSize"], int)
        sp.compile_filters(esm["filters"])  # the template only uses what the pump implements

    def test_short_tags_and_ref_resolution(self) -> None:
        text = """
Parameters:
  Size: {Type: Number, Default: 7}
Resources:
  IngestFunction:
    Type: AWS::Serverless::Function
    Properties:
      Role: !GetAtt R.Arn
      Name: !Sub "${AWS::StackName}-x"
      Events:
        E:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt TasksTable.StreamArn
            BatchSize: !Ref Size
            FilterCriteria: {Filters: [{Pattern: '{"eventName": ["INSERT"]}'}]}
"""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        tpl = template_model.load_template(f.name)
        esm = template_model.ingest_event_source(tpl)
        self.assertEqual(esm["BatchSize"], 7)
        self.assertEqual(esm["filters"], [{"eventName": ["INSERT"]}])
        self.assertEqual(esm["MaximumRetryAttempts"], -1)  # Lambda's default when omitted
        with self.assertRaises(template_model.TemplateError):
            template_model.resolve(tpl, {"Fn::Sub": "x"})


class FilterTest(unittest.TestCase):
    filters = sp.compile_filters(template_model.ingest_event_source()["filters"])

    def passes(self, rec: dict[str, Any]) -> bool:
        return sp.passes(self.filters, rec)

    def test_insert_received_passes(self) -> None:
        self.assertTrue(self.passes(record("INSERT", new=item("a", "received"))))

    def test_insert_other_status_does_not(self) -> None:
        self.assertFalse(self.passes(record("INSERT", new=item("a", "downloading"))))

    def test_duplicate_callback_count_bump_does_not_pass(self) -> None:
        old = item("a", "received")
        new = item("a", "received", callback_count={"N": "2"})
        self.assertFalse(self.passes(record("MODIFY", new=new, old=old)))

    def test_failed_to_received_passes(self) -> None:
        self.assertTrue(self.passes(record("MODIFY", new=item("a", "received"), old=item("a", "failed"))))

    def test_received_to_downloading_does_not(self) -> None:
        self.assertFalse(self.passes(record("MODIFY", new=item("a", "downloading"), old=item("a", "received"))))

    def test_expired_lease_redrive_passes(self) -> None:
        # The reconciler's re-drive of a dead invocation's task: downloading -> received.
        self.assertTrue(self.passes(record("MODIFY", new=item("a", "received"), old=item("a", "downloading"))))

    def test_redrive_of_a_received_task_passes_each_time_the_mark_flips(self) -> None:
        mark = {"S": "2026-11-18T11:06:40.000Z"}
        plain, marked = item("a", "received"), item("a", "received", redrive_mark=mark)
        self.assertTrue(self.passes(record("MODIFY", new=marked, old=plain)), "mark appears")
        self.assertTrue(self.passes(record("MODIFY", new=plain, old=marked)), "mark disappears")
        # A duplicate callback on a re-driven task keeps the mark as it is: no trigger.
        counted = item("a", "received", redrive_mark=mark, callback_count={"N": "2"})
        self.assertFalse(self.passes(record("MODIFY", new=counted, old=marked)))
        self.assertFalse(self.passes(record("MODIFY", new=item("a", "received", callback_count={"N": "2"}), old=plain)))
        # An expected task registered: no trigger (nothing to download yet).
        self.assertFalse(self.passes(record("INSERT", new=item("a", "expected"))))
        self.assertTrue(self.passes(record("MODIFY", new=item("a", "received"), old=item("a", "expected"))))

    def test_remove_does_not(self) -> None:
        self.assertFalse(self.passes(record("REMOVE", old=item("a", "received"))))

    def test_unsupported_operators_raise(self) -> None:
        for bad in (
            {"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 1]}]}}}},
            {"eventName": [{"suffix": "T"}]},
            {"eventName": [{"anything-but": {"prefix": "I"}}]},
            {"eventName": [{"wildcard": "*"}]},
            {"eventName": []},
            {"eventName": "INSERT"},
        ):
            with self.subTest(bad=bad), self.assertRaises(sp.PatternError):
                sp.compile_filters([bad])

    def test_operators(self) -> None:
        rec = record("MODIFY", new=item("abc-1", "received", tags={"SS": ["x", "y"]}), old=item("abc-1", "failed"))
        yes = [
            {"dynamodb": {"Keys": {"task_id": {"S": [{"prefix": "abc-"}]}}}},
            {"dynamodb": {"NewImage": {"open_status": {"S": [{"exists": True}]}}}},
            {"dynamodb": {"OldImage": {"open_status": [{"exists": False}]}}},
            {"dynamodb": {"NewImage": {"tags": {"SS": ["y"]}}}},  # any element of an array
            {"eventName": [{"anything-but": "INSERT"}]},
            {"eventName": ["INSERT", "MODIFY"]},
            {"dynamodb": {"SizeBytes": [200.0]}},  # numbers compare as numbers
            {"dynamodb": {"NewImage": [{"exists": False}]}},  # an object is not a leaf
        ]
        no = [
            {"dynamodb": {"Keys": {"task_id": {"S": [{"prefix": "abd"}]}}}},
            {"dynamodb": {"OldImage": {"open_status": {"S": [{"exists": True}]}}}},
            {"dynamodb": {"NewImage": {"missing": {"S": [{"anything-but": "x"}]}}}},  # needs the field
            {"dynamodb": {"SizeBytes": ["200"]}},  # JSON types matter
            {"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": ["failed"]}}}},
            {"dynamodb": {"NewImage": [{"exists": True}]}},
        ]
        for p in yes:
            with self.subTest(p=p):
                self.assertTrue(sp.matches(sp.compile_filters([p])[0], rec))
        for p in no:
            with self.subTest(p=p):
                self.assertFalse(sp.matches(sp.compile_filters([p])[0], rec))

    def test_lambda_record_shape(self) -> None:
        raw = raw_record("INSERT", new=item("a", "received", blob={"B": b"\x00\x01"}))
        rec = sp.to_lambda_record(raw, STREAM_ARN, "us-east-1")
        self.assertEqual(rec["eventVersion"], "1.1")
        self.assertEqual(rec["eventSourceARN"], STREAM_ARN)
        self.assertEqual(rec["dynamodb"]["ApproximateCreationDateTime"], 1767268800)
        self.assertEqual(rec["dynamodb"]["NewImage"]["blob"], {"B": "AAE="})
        self.assertNotIn("OldImage", rec["dynamodb"])
        json.dumps(rec)  # serialisable as is


class FakeInvoker:
    """Answers per task id from a script: a list of responses consumed one per invocation."""

    def __init__(self, script: dict[str, list[Any]]):
        self.script = script
        self.calls: list[list[str]] = []

    def __call__(self, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        tasks = [r["dynamodb"]["Keys"]["task_id"]["S"] for r in event["Records"]]
        self.calls.append(tasks)
        failed = []
        for r, t in zip(event["Records"], tasks):
            steps = self.script.get(t, [])
            step = steps.pop(0) if len(steps) > 1 else (steps[0] if steps else "ok")
            if step == "down":
                raise sp.EndpointDown("connection refused")
            if step == "error":
                return 500, {}, b'{"errorType":"Boom","errorMessage":"boom"}'
            if step == "fail":
                failed.append({"itemIdentifier": r["dynamodb"]["SequenceNumber"]})
        return 200, {}, json.dumps({"batchItemFailures": failed}).encode()


def batch(*tasks: str) -> list[dict[str, Any]]:
    return [record("INSERT", new=item(t, "received")) for t in tasks]


class BatchProcessorTest(unittest.TestCase):
    def processor(self, invoker: FakeInvoker, max_retries: int = 3, bisect: bool = False) -> sp.BatchProcessor:
        self.sleeps: list[float] = []
        return sp.BatchProcessor(invoker, max_retries=max_retries, bisect=bisect, report_item_failures=True,
                                 retry_delay=1.0, sleep=self.sleeps.append)

    def test_retry_from_first_failed_sequence_number(self) -> None:
        inv = FakeInvoker({"b": ["fail", "ok"], "d": ["fail", "ok"]})
        self.processor(inv).process(batch("a", "b", "c", "d"))
        # b and d failed: b and everything after it comes again; a does not.
        self.assertEqual(inv.calls, [["a", "b", "c", "d"], ["b", "c", "d"]])
        self.assertEqual(self.sleeps, [1.0])

    def test_max_retries_then_dead_letter(self) -> None:
        inv = FakeInvoker({"b": ["fail"]})
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "dead-letters.jsonl"
            p = self.processor(inv, max_retries=2)
            p.dead_letter_path = path
            p.process(batch("a", "b", "c"))
            lines = [json.loads(x) for x in path.read_text().splitlines()]
        # 1 attempt + 2 retries for b; then b is dropped and c still delivered.
        self.assertEqual(inv.calls, [["a", "b", "c"], ["b", "c"], ["b", "c"], ["c"]])
        self.assertEqual([x["record"]["dynamodb"]["Keys"]["task_id"]["S"] for x in lines], ["b"])
        self.assertEqual(lines[0]["attempts"], 3)

    def test_zero_retries(self) -> None:
        inv = FakeInvoker({"a": ["error"]})
        p = self.processor(inv, max_retries=0)
        p.process(batch("a"))
        self.assertEqual(inv.calls, [["a"]])
        self.assertEqual(len(p.dead_letters), 1)

    def test_function_error_retries_whole_batch(self) -> None:
        inv = FakeInvoker({"a": ["error", "ok"]})
        self.processor(inv).process(batch("a", "b"))
        self.assertEqual(inv.calls, [["a", "b"], ["a", "b"]])

    def test_function_error_bisects(self) -> None:
        inv = FakeInvoker({"c": ["error"]})
        p = self.processor(inv, max_retries=2, bisect=True)
        p.process(batch("a", "b", "c", "d"))
        # Halves until the poison record is alone; its neighbours still get through.
        self.assertEqual(inv.calls, [["a", "b", "c", "d"], ["a", "b"], ["c", "d"], ["c"], ["d"]])
        self.assertEqual([d["record"]["dynamodb"]["Keys"]["task_id"]["S"] for d in p.dead_letters], ["c"])

    def test_unknown_item_identifier_fails_whole_batch(self) -> None:
        out = sp.parse_response(200, {}, b'{"batchItemFailures":[{"itemIdentifier":""}]}', batch("a", "b"), True)
        self.assertEqual((out.kind, len(out.failed)), ("partial", 2))
        out = sp.parse_response(200, {}, b"not json", batch("a"), True)
        self.assertEqual(out.kind, "partial")
        out = sp.parse_response(200, {}, b"null", batch("a"), True)
        self.assertEqual(out.kind, "ok")
        # Without ReportBatchItemFailures the ESM ignores the response body.
        b = batch("a")
        body = json.dumps({"batchItemFailures": [{"itemIdentifier": sp.seq_of(b[0])}]}).encode()
        self.assertEqual(sp.parse_response(200, {}, body, b, False).kind, "ok")
        self.assertEqual(sp.parse_response(200, {"X-Amz-Function-Error": "Unhandled"}, b"{}", b, True).kind, "error")

    def test_endpoint_down_does_not_spend_retries(self) -> None:
        inv = FakeInvoker({"a": ["down", "down", "ok"]})
        p = self.processor(inv, max_retries=0)
        p.process(batch("a"))
        self.assertEqual(len(inv.calls), 3)
        self.assertEqual(p.dead_letters, [])

    def test_max_retries_cap(self) -> None:
        self.assertEqual(sp.effective_max_retries(-1, None), -1)
        self.assertEqual(sp.effective_max_retries(-1, 2), 2)
        self.assertEqual(sp.effective_max_retries(10, 2), 2)
        self.assertEqual(sp.effective_max_retries(1, 5), 1)


# ---------------------------------------------------------------------------------------------
# Integration: moto_server + the pump + a fake invoke endpoint
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LanesTest(unittest.TestCase):
    """ParallelizationFactor: one key's records in order, other keys not held back."""

    def test_one_key_in_order_other_keys_concurrently(self) -> None:
        release = threading.Event()
        seen: list[tuple[str, str]] = []  # (task id, status) in delivery order
        lock = threading.Lock()

        def process(b: list[dict[str, Any]]) -> None:
            for r in b:
                task = r["dynamodb"]["Keys"]["task_id"]["S"]
                status = r["dynamodb"]["NewImage"]["status"]["S"]
                if task == "slow" and status == "received":
                    release.wait(5)  # a long download
                with lock:
                    seen.append((task, status))

        lanes = sp.Lanes(4, 1, process)
        others = [f"t{i}" for i in range(12) if sp.lane_of(record("INSERT", new=item(f"t{i}", "received")), 4)
                  != sp.lane_of(record("INSERT", new=item("slow", "received")), 4)]
        lanes.submit([record("INSERT", new=item("slow", "received"))])
        lanes.submit([record("MODIFY", new=item("slow", "downloading"))])
        lanes.submit([record("INSERT", new=item(t, "received")) for t in others])
        # Every other lane drains while the slow task's lane is still busy.
        deadline = time.monotonic() + 5
        while len(seen) < len(others) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(sorted(t for t, _ in seen), sorted(others))
        self.assertEqual(lanes.pending(), 2)
        release.set()
        self.assertTrue(lanes.wait_idle(5))
        slow = [st for t, st in seen if t == "slow"]
        self.assertEqual(slow, ["received", "downloading"])
        self.assertEqual(lanes.delivered, len(others) + 2)

    def test_a_batch_whose_delivery_raises_is_delivered_again_before_the_next(self) -> None:
        calls: list[list[str]] = []
        waits: list[float] = []

        def process(b: list[dict[str, Any]]) -> None:
            calls.append([r["dynamodb"]["NewImage"]["status"]["S"] for r in b])
            if len(calls) <= 2:
                raise RuntimeError("a bug in delivery")

        lanes = sp.Lanes(1, 1, process, retry_delay=0.5, sleep=waits.append)
        lanes.submit([record("INSERT", new=item("a", "received")),
                      record("MODIFY", new=item("a", "downloading"))])
        self.assertTrue(lanes.wait_idle(5))
        self.assertEqual(calls, [["received"], ["received"], ["received"], ["downloading"]])
        self.assertEqual(waits, [0.5, 1.0])
        self.assertEqual(lanes.delivered, 2)

    def test_lane_is_a_function_of_the_key(self) -> None:
        a1 = record("INSERT", new=item("a", "received"))
        a2 = record("MODIFY", new=item("a", "downloading"))
        self.assertEqual(sp.lane_of(a1, 5), sp.lane_of(a2, 5))
        spread = {sp.lane_of(record("INSERT", new=item(f"k{i}", "received")), 5) for i in range(50)}
        self.assertEqual(spread, set(range(5)))

    def test_template_parallelization_is_read(self) -> None:
        # The template's parameter default, resolved through its !Ref.
        esm = template_model.ingest_event_source()
        self.assertEqual(esm["ParallelizationFactor"], 5)


class FakeLambda(http.server.ThreadingHTTPServer):
    """Records invocations; answers per task id: 'partial-once' fails once, 'poison' always 500."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.failed_once: set[str] = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.events.append({"path": self.path, "event": event})
                status, failures = 200, []
                for r in event["Records"]:
                    task = r["dynamodb"]["Keys"]["task_id"]["S"]
                    if task.startswith("poison"):
                        status = 500
                    elif task.startswith("partial") and task not in server.failed_once:
                        server.failed_once.add(task)
                        failures.append({"itemIdentifier": r["dynamodb"]["SequenceNumber"]})
                body = json.dumps({"errorType": "Boom", "errorMessage": "boom"} if status != 200
                                  else {"batchItemFailures": failures}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


class MotoIntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        import boto3

        cls.port = free_port()
        cls.endpoint = f"http://127.0.0.1:{cls.port}"
        cls.moto = subprocess.Popen([sys.executable, str(HERE / "moto_server.py"), "-H", "127.0.0.1",
                                     "-p", str(cls.port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        kw = dict(endpoint_url=cls.endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
        cls.ddb = boto3.client("dynamodb", **kw)
        cls.streams = boto3.client("dynamodbstreams", **kw)
        deadline = time.monotonic() + 30
        while True:
            try:
                cls.ddb.list_tables()
                break
            except Exception:
                if time.monotonic() > deadline or cls.moto.poll() is not None:
                    cls.tearDownClass()
                    raise
                time.sleep(0.2)
        cls.fake = FakeLambda()
        threading.Thread(target=cls.fake.serve_forever, daemon=True).start()
        cls.invoke_base = f"http://127.0.0.1:{cls.fake.server_address[1]}"

    @classmethod
    def tearDownClass(cls) -> None:
        if getattr(cls, "fake", None):
            cls.fake.shutdown()
            cls.fake.server_close()
        os.killpg(cls.moto.pid, signal.SIGTERM)
        cls.moto.wait(10)

    def setUp(self) -> None:
        self.fake.events.clear()
        self.table = f"tasks-{self.id().rsplit('.', 1)[-1]}"

    def create_table(self) -> None:
        self.ddb.create_table(**template_model.tasks_table_create_args(self.table))
        self.ddb.update_time_to_live(**template_model.tasks_table_ttl_args(self.table))

    def set_status(self, task: str, status: str) -> None:
        self.ddb.update_item(TableName=self.table, Key={"task_id": {"S": task}},
                             UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                             ExpressionAttributeValues={":s": {"S": status}})

    def delivered(self) -> list[tuple[str, str]]:
        return [(r["dynamodb"]["Keys"]["task_id"]["S"], r["eventName"])
                for e in self.fake.events for r in e["event"]["Records"]]

    def test_pump_delivers_exactly_the_filtered_records(self) -> None:
        esm = template_model.ingest_event_source()
        url = f"{self.invoke_base}/2015-03-31/functions/ingest/invocations"
        processor = sp.BatchProcessor(sp.http_invoker(url, 10), max_retries=2, bisect=True,
                                      report_item_failures=True, retry_delay=0)
        pump = sp.StreamPump(self.ddb, self.streams, self.table, processor, esm["filters"], 1, "us-east-1")

        self.assertEqual(pump.poll_once(), 0)  # no table yet: waits, no error
        self.create_table()
        put = lambda i: self.ddb.put_item(TableName=self.table, Item=i)  # noqa: E731

        put(item("t-new", "received"))  # INSERT received: delivered
        self.ddb.update_item(TableName=self.table, Key={"task_id": {"S": "t-new"}},  # duplicate callback
                             UpdateExpression="ADD callback_count :one",
                             ExpressionAttributeValues={":one": {"N": "1"}})
        self.set_status("t-new", "downloading")  # received -> downloading: no
        self.set_status("t-new", "failed")  # downloading -> failed: no
        self.set_status("t-new", "received")  # failed -> received (revived): delivered
        put(item("t-other", "downloading"))  # INSERT, not received: no
        self.ddb.delete_item(TableName=self.table, Key={"task_id": {"S": "t-other"}})  # REMOVE: no
        put(item("partial-1", "received"))  # fails once via batchItemFailures, then ok
        put(item("poison-1", "received"))  # 500 every time: 1 + 2 retries, then dead letter
        self.set_status("t-upsert", "received")  # upsert: moto writes a key-only INSERT first
        put(item("t-last", "received"))

        for _ in range(5):
            pump.poll_once()
        self.assertEqual(self.delivered(), [
            ("t-new", "INSERT"),
            ("t-new", "MODIFY"),
            ("partial-1", "INSERT"), ("partial-1", "INSERT"),
            ("poison-1", "INSERT"), ("poison-1", "INSERT"), ("poison-1", "INSERT"),
            ("t-upsert", "INSERT"),
            ("t-last", "INSERT"),
        ])
        self.assertEqual([d["record"]["dynamodb"]["Keys"]["task_id"]["S"] for d in processor.dead_letters],
                         ["poison-1"])
        first = self.fake.events[0]
        self.assertEqual(first["path"], "/2015-03-31/functions/ingest/invocations")
        rec = first["event"]["Records"][0]
        stream_arn = self.ddb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        self.assertEqual(rec["eventSourceARN"], stream_arn)
        self.assertEqual(rec["eventVersion"], "1.1")
        self.assertIsInstance(rec["dynamodb"]["ApproximateCreationDateTime"], int)
        self.assertAlmostEqual(rec["dynamodb"]["ApproximateCreationDateTime"], time.time(), delta=120)
        self.assertNotIn("OldImage", rec["dynamodb"])
        revived = self.fake.events[1]["event"]["Records"][0]["dynamodb"]
        self.assertEqual(revived["OldImage"]["status"], {"S": "failed"})

        # Nothing new: a further round reads nothing and delivers nothing.
        before = len(self.fake.events)
        self.assertEqual(pump.poll_once(), 0)
        self.assertEqual(len(self.fake.events), before)

    def test_pump_follows_a_recreated_table(self) -> None:
        url = f"{self.invoke_base}/2015-03-31/functions/ingest/invocations"
        processor = sp.BatchProcessor(sp.http_invoker(url, 10), max_retries=0, bisect=False,
                                      report_item_failures=True, retry_delay=0)
        pump = sp.StreamPump(self.ddb, self.streams, self.table, processor,
                             template_model.ingest_event_source()["filters"], 1, "us-east-1")
        pump.discovery_interval = 0
        self.create_table()
        self.ddb.put_item(TableName=self.table, Item=item("before", "received"))
        pump.poll_once()
        self.ddb.delete_table(TableName=self.table)
        pump.poll_once()  # table gone: waits
        self.create_table()
        self.ddb.put_item(TableName=self.table, Item=item("after", "received"))
        pump.poll_once()
        self.assertEqual(self.delivered(), [("before", "INSERT"), ("after", "INSERT")])

    def test_cli_process_delivers_and_stops_on_sigterm(self) -> None:
        self.create_table()
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, PUMP_RETRY_DELAY="0", PUMP_MAX_RETRIES="1", PUMP_POLL_INTERVAL="0.2",
                       PUMP_DEAD_LETTER_FILE=f"{d}/dl.jsonl", AWS_ENDPOINT_URL_DYNAMODB=self.endpoint,
                       TABLE_NAME=self.table, LAMBDA_INVOKE_URL=self.invoke_base)
            proc = subprocess.Popen([sys.executable, str(HERE / "stream_pump.py")], env=env,
                                    stderr=subprocess.PIPE, text=True)
            try:
                self.ddb.put_item(TableName=self.table, Item=item("cli-1", "received"))
                self.ddb.put_item(TableName=self.table, Item=item("poison-cli", "received"))
                deadline = time.monotonic() + 20
                while len(self.fake.events) < 3 and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(0.3)
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 0, err)
            # The CLI runs the template's ParallelizationFactor: the two keys are on their
            # own lanes, so only each key's own order is fixed.
            self.assertEqual(sorted(self.delivered()),
                             [("cli-1", "INSERT"), ("poison-cli", "INSERT"), ("poison-cli", "INSERT")])
            dead = [json.loads(x) for x in Path(f"{d}/dl.jsonl").read_text().splitlines()]
            self.assertEqual([x["record"]["dynamodb"]["Keys"]["task_id"]["S"] for x in dead], ["poison-cli"])
        self.assertIn("invoke task_id=cli-1 records=1 -> ok", err)
        self.assertIn("stopping on SIGTERM", err)
        self.assertIn(f"ParallelizationFactor={template_model.ingest_event_source()['ParallelizationFactor']}", err)


if __name__ == "__main__":
    unittest.main()
