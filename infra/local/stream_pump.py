"""Local stand-in for the Lambda event source mapping (ESM) of a stream-triggered function
(ingest, and notify with `--function-id NotifyFunction`).

Polls the tasks table's DynamoDB stream on moto, keeps the records that pass the template's
FilterCriteria (matched the way Lambda matches them, on the record as it appears in the
event), batches them by BatchSize and invokes the ingest function through
`cargo lambda watch`:

    POST {invoke_url}/2015-03-31/functions/{function}/invocations

Failure handling follows the real ESM with ReportBatchItemFailures: a partial batch response
retries from the first failed sequence number; a function error retries the whole batch
(bisected when BisectBatchOnFunctionError); a record that failed more than
MaximumRetryAttempts times is written to `.local/dead-letters.jsonl` (the local stand-in for
the on-failure destination) and skipped. Shards are read in order, parents before children.

ParallelizationFactor is modelled the way the ESM does it: up to that many batches in flight
per shard, records of one partition key always on the same lane (so each key's changes stay
in order) while a slow download of one task does not hold back the others.

Everything comes from template.yaml (see template_model.py); env/CLI only say where things are.
Not modelled: MaximumRecordAgeInSeconds, batching windows. Run
`python3 infra/local/stream_pump.py --help`.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import zlib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import template_model  # noqa: E402

log = logging.getLogger("stream-pump")

# ---------------------------------------------------------------------------------------------
# Filter patterns (the subset of EventBridge pattern syntax Lambda filtering supports that we
# implement; anything else is rejected up front so a filter is never silently ignored).
# ---------------------------------------------------------------------------------------------

OPERATORS = {"anything-but", "exists", "prefix"}
_MISSING = object()
_SCALARS = (str, int, float, bool, type(None))


class PatternError(ValueError):
    """A filter pattern uses syntax the local pump does not implement."""


def validate_pattern(pattern: Any, path: str = "") -> None:
    """Raise PatternError unless `pattern` only uses what `matches` implements."""
    if not isinstance(pattern, dict) or not pattern:
        raise PatternError(f"{path or 'pattern'}: expected a non-empty object")
    for key, sub in pattern.items():
        here = f"{path}.{key}" if path else key
        if isinstance(sub, dict):
            validate_pattern(sub, here)
        elif isinstance(sub, list) and sub:
            for m in sub:
                _validate_matcher(m, here)
        else:
            raise PatternError(f"{here}: expected an object or a non-empty list, got {sub!r}")


def _validate_matcher(m: Any, path: str) -> None:
    if isinstance(m, _SCALARS):
        return
    if not isinstance(m, dict) or len(m) != 1:
        raise PatternError(f"{path}: unsupported matcher {m!r}")
    op, arg = next(iter(m.items()))
    if op not in OPERATORS:
        raise PatternError(f"{path}: unsupported operator {op!r} (the local pump supports {sorted(OPERATORS)})")
    ok = {
        "exists": isinstance(arg, bool),
        "prefix": isinstance(arg, str),
        # anything-but takes a scalar or a list of scalars; its object forms
        # ({"anything-but": {"prefix": ...}}) are not implemented.
        "anything-but": (isinstance(arg, _SCALARS) and arg is not None)
        or (isinstance(arg, list) and bool(arg) and all(isinstance(a, _SCALARS) for a in arg)),
    }[op]
    if not ok:
        raise PatternError(f"{path}: unsupported argument for {op!r}: {arg!r}")


def matches(pattern: dict[str, Any], event: Any) -> bool:
    """Does `event` match `pattern`? Pattern fields are ANDed, values in a list are ORed.

    Like Lambda (event-ruler) we match on the event's leaves: a pattern list only ever matches
    leaf values, so an object in the event is as good as absent for it ("exists" included),
    and an array in the event matches when any of its elements does.
    """
    for key, sub in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(sub, dict):
            if isinstance(value, list):
                ok = any(isinstance(v, dict) and matches(sub, v) for v in value)
            else:
                # A missing (or scalar) value can still satisfy nested {"exists": false} leaves.
                ok = matches(sub, value if isinstance(value, dict) else _MISSING)
        else:
            ok = _match_leaf(sub, value)
        if not ok:
            return False
    return True


def _match_leaf(matchers: list[Any], value: Any) -> bool:
    if value is _MISSING or isinstance(value, dict):
        leaves: list[Any] = []
    elif isinstance(value, list):
        leaves = [v for v in value if isinstance(v, _SCALARS)]
    else:
        leaves = [value]
    for m in matchers:
        if isinstance(m, dict) and "exists" in m:
            if bool(leaves) == m["exists"]:
                return True
        elif any(_match_value(m, v) for v in leaves):
            return True
    return False


def _match_value(m: Any, v: Any) -> bool:
    if isinstance(m, dict):
        op, arg = next(iter(m.items()))
        if op == "prefix":
            return isinstance(v, str) and v.startswith(arg)
        if op == "anything-but":
            return not any(_equal(a, v) for a in (arg if isinstance(arg, list) else [arg]))
        raise PatternError(f"unsupported operator {op!r}")  # unreachable after validation
    return _equal(m, v)


def _equal(a: Any, b: Any) -> bool:
    # JSON types matter: "1" != 1 and true != 1 (Python alone would say True == 1).
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def compile_filters(filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, f in enumerate(filters):
        try:
            validate_pattern(f)
        except PatternError as e:
            raise PatternError(f"FilterCriteria pattern #{i + 1}: {e}") from None
    return filters


def passes(filters: list[dict[str, Any]], record: dict[str, Any]) -> bool:
    """No filters: everything passes; otherwise any one filter must match (filters are ORed)."""
    return not filters or any(matches(f, record) for f in filters)


# ---------------------------------------------------------------------------------------------
# Stream record -> Lambda event record
# ---------------------------------------------------------------------------------------------


def _b64(value: Any) -> Any:
    # boto3 decodes B/BS attribute values to bytes; the Lambda event carries them as base64.
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_b64(v) for v in value]
    if isinstance(value, dict):
        return {k: _b64(v) for k, v in value.items()}
    return value


def to_lambda_record(raw: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A `get_records` record (as boto3 returns it) in the shape Lambda puts in the event."""
    src = raw["dynamodb"]
    ddb: dict[str, Any] = {}
    created = src.get("ApproximateCreationDateTime")
    if isinstance(created, dt.datetime):
        ddb["ApproximateCreationDateTime"] = int(created.timestamp())  # Lambda: epoch seconds
    elif created is not None:
        ddb["ApproximateCreationDateTime"] = int(created)
    for key in ("Keys", "NewImage", "OldImage"):
        if key in src:
            ddb[key] = _b64(src[key])
    for key in ("SequenceNumber", "SizeBytes", "StreamViewType"):
        if key in src:
            ddb[key] = src[key]
    rec = {
        "eventID": raw.get("eventID"),
        "eventName": raw.get("eventName"),
        "eventVersion": "1.1",  # what Lambda sends (moto's stream says 1.0)
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in raw:  # TTL deletions carry it
        rec["userIdentity"] = raw["userIdentity"]
    return rec


def describe_records(records: list[dict[str, Any]]) -> str:
    """Short text for log lines: the task ids (when the key is task_id), else sequence numbers."""
    ids = []
    for r in records:
        task = r["dynamodb"].get("Keys", {}).get("task_id", {}).get("S")
        ids.append(f"task_id={task}" if task else f"seq={r['dynamodb'].get('SequenceNumber')}")
    return " ".join(ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")


def seq_of(record: dict[str, Any]) -> str:
    return record["dynamodb"]["SequenceNumber"]


# ---------------------------------------------------------------------------------------------
# Invocation and the batch retry bookkeeping
# ---------------------------------------------------------------------------------------------


class EndpointDown(Exception):
    """Nothing answers at the invoke URL (cargo lambda watch not up): not the function's fault."""


@dataclass
class Outcome:
    kind: str  # "ok" | "partial" | "error"
    failed: list[str] = field(default_factory=list)  # partial: reported sequence numbers
    detail: str = ""


# An invoker takes the event and returns (HTTP status, headers, body); raises EndpointDown.
Invoker = Callable[[dict[str, Any]], "tuple[int, dict[str, str], bytes]"]


def http_invoker(url: str, timeout: float) -> Invoker:
    def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(
            url, data=json.dumps(event).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers or {}), e.read()
        except (TimeoutError, socket.timeout):
            # When a function process dies mid-invocation cargo lambda watch does not answer
            # (or answers 408 after its --timeout): a timeout is a function error, like Lambda's.
            return 504, {}, b'{"errorType":"Timeout","errorMessage":"no response within the invoke timeout"}'
        except (urllib.error.URLError, ConnectionError) as e:
            raise EndpointDown(str(getattr(e, "reason", e))) from None
    return invoke


def parse_response(status: int, headers: dict[str, str], body: bytes,
                   batch: list[dict[str, Any]], report_item_failures: bool) -> Outcome:
    """Classify an invocation result the way the ESM does."""
    snippet = body[:300].decode("utf-8", "replace")
    function_error = {k.lower(): v for k, v in headers.items()}.get("x-amz-function-error")
    if status != 200 or function_error:
        return Outcome("error", detail=f"HTTP {status} {function_error or ''} {snippet}".strip())
    try:
        payload = json.loads(body) if body.strip() else None
    except ValueError:
        payload = _MISSING
    if isinstance(payload, dict) and "errorType" in payload and "errorMessage" in payload \
            and "batchItemFailures" not in payload:
        return Outcome("error", detail=f"error payload {snippet}")
    if not report_item_failures:
        return Outcome("ok")
    if payload is _MISSING:
        # ReportBatchItemFailures: an unparseable response fails the whole batch.
        return Outcome("partial", [seq_of(r) for r in batch], f"invalid JSON response {snippet}")
    failures = payload.get("batchItemFailures") if isinstance(payload, dict) else None
    if not failures:
        return Outcome("ok")
    known = {seq_of(r) for r in batch}
    ids = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
    if not all(isinstance(i, str) and i in known for i in ids):
        # Empty, null or unknown identifiers make Lambda fail the whole batch.
        return Outcome("partial", sorted(known), f"invalid batchItemFailures {snippet}")
    return Outcome("partial", ids, f"batchItemFailures {ids}")


class BatchProcessor:
    """Delivers one batch until every record succeeded or was dead-lettered."""

    def __init__(self, invoker: Invoker, *, max_retries: int, bisect: bool,
                 report_item_failures: bool, retry_delay: float = 1.0,
                 dead_letter_path: Path | None = None, endpoint_wait: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.invoker = invoker
        self.max_retries = max_retries  # < 0: unlimited, like MaximumRetryAttempts -1
        self.bisect = bisect
        self.report_item_failures = report_item_failures
        self.retry_delay = retry_delay
        self.dead_letter_path = dead_letter_path
        self.endpoint_wait = endpoint_wait
        self.sleep = sleep
        self.dead_letters: list[dict[str, Any]] = []  # also kept in memory, for tests
        self._dead_letter_lock = threading.Lock()  # lanes may dead-letter at the same time

    def process(self, batch: list[dict[str, Any]]) -> None:
        failures: dict[str, int] = {}  # sequence number -> failed deliveries so far
        work = [list(batch)]  # segments still to deliver, in stream order
        while work:
            seg = work.pop(0)
            out = self._invoke(seg)
            if out.kind == "ok":
                continue
            if out.kind == "partial":
                # Like the ESM: resume from the first failed record; everything after it is
                # delivered again, but only the reported records count a failure.
                first = min(i for i, r in enumerate(seg) if seq_of(r) in out.failed)
                retry, blamed = seg[first:], set(out.failed)
            else:
                retry, blamed = seg, {seq_of(r) for r in seg}
            for s in blamed:
                failures[s] = failures.get(s, 0) + 1
            keep = []
            for r in retry:
                if self.max_retries >= 0 and failures.get(seq_of(r), 0) > self.max_retries:
                    self._dead_letter(r, failures[seq_of(r)], out.detail)
                else:
                    keep.append(r)
            if not keep:
                continue
            self.sleep(self.retry_delay)
            if out.kind == "error" and self.bisect and len(keep) > 1:
                half = len(keep) // 2
                work[0:0] = [keep[:half], keep[half:]]
            else:
                work.insert(0, keep)

    def _invoke(self, seg: list[dict[str, Any]]) -> Outcome:
        what = describe_records(seg)
        while True:
            started = time.monotonic()
            try:
                status, headers, body = self.invoker({"Records": seg})
            except EndpointDown as e:
                # Local plumbing, not a function failure: wait without spending retries.
                log.warning("invoke endpoint unreachable (%s); retrying %s", e, what)
                self.sleep(self.endpoint_wait)
                continue
            out = parse_response(status, headers, body, seg, self.report_item_failures)
            took = time.monotonic() - started
            log.info("invoke %s records=%d -> %s%s (%.1fs)", what, len(seg), out.kind,
                     f": {out.detail}" if out.detail else "", took)
            return out

    def _dead_letter(self, record: dict[str, Any], attempts: int, reason: str) -> None:
        entry = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "reason": reason, "attempts": attempts, "record": record,
        }
        log.error("dead letter: %s seq %s after %d failed attempts (%s)",
                  describe_records([record]), seq_of(record), attempts, reason)
        with self._dead_letter_lock:
            self.dead_letters.append(entry)
            if self.dead_letter_path:
                self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.dead_letter_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")


def lane_of(record: dict[str, Any], lanes: int) -> int:
    """The lane of a record: a stable hash of its partition key, like the ESM's."""
    keys = json.dumps(record.get("dynamodb", {}).get("Keys", {}), sort_keys=True)
    return zlib.crc32(keys.encode()) % lanes


class Lanes:
    """ParallelizationFactor: `count` lanes, each delivering its batches in order.

    A record always goes to the lane of its partition key, so one task's changes are
    delivered in stream order; different tasks' batches run concurrently.
    """

    def __init__(self, count: int, batch_size: int, process: Callable[[list[dict[str, Any]]], None],
                 retry_delay: float = 1.0, sleep: Callable[[float], None] = time.sleep):
        self.batch_size = max(1, batch_size)
        self.process = process
        self.retry_delay = retry_delay
        self.sleep = sleep
        self.queues: list[queue.Queue[dict[str, Any]]] = [queue.Queue() for _ in range(count)]
        self.delivered = 0
        self._lock = threading.Lock()
        for i, q in enumerate(self.queues):
            # Daemon threads: a stop signal must not wait for a 15-minute invocation.
            threading.Thread(target=self._run, args=(q,), name=f"lane-{i}", daemon=True).start()

    def submit(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.queues[lane_of(r, len(self.queues))].put(r)

    def pending(self) -> int:
        return sum(q.unfinished_tasks for q in self.queues)

    def wait_idle(self, timeout: float) -> bool:
        """Waits until every submitted record was handled (for tests); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _run(self, q: "queue.Queue[dict[str, Any]]") -> None:
        while True:
            batch = [q.get()]
            while len(batch) < self.batch_size:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            delay = self.retry_delay
            while True:
                try:
                    self.process(batch)
                    with self._lock:
                        self.delivered += len(batch)
                    break
                except Exception:  # noqa: BLE001 - a bug in delivery must not kill the lane
                    # Nor lose the batch: like the ESM, the same records go again (later
                    # ones on this lane wait, so one task's order holds).
                    log.exception("delivering %s failed; again in %.0fs", describe_records(batch), delay)
                    self.sleep(delay)
                    delay = min(delay * 2, 30.0)
            for _ in batch:
                q.task_done()


# ---------------------------------------------------------------------------------------------
# Stream polling
# ---------------------------------------------------------------------------------------------


@dataclass
class Shard:
    shard_id: str
    parent: str | None
    iterator: str | None = None
    checkpoint: str | None = None  # last sequence number handled (delivered or filtered out)
    done: bool = False  # closed and fully read


class StreamPump:
    def __init__(self, dynamodb: Any, streams: Any, table_name: str, processor: BatchProcessor,
                 filters: list[dict[str, Any]], batch_size: int, region: str, parallelization: int = 1):
        self.dynamodb = dynamodb
        self.streams = streams
        self.table_name = table_name
        self.processor = processor
        self.filters = compile_filters(filters)
        self.batch_size = max(1, batch_size)
        self.region = region
        self.stream_arn: str | None = None
        self.shards: dict[str, Shard] = {}
        self._waiting_note: str | None = None
        self.discovery_interval = 5.0
        self._next_discovery = 0.0
        self._delivered = 0  # records handed to the function (for tests and logs)
        # 1: batches are delivered inside poll_once, one at a time; more: by lanes.
        self.lanes = Lanes(parallelization, self.batch_size, processor.process) if parallelization > 1 else None

    @property
    def delivered(self) -> int:
        return self._delivered + (self.lanes.delivered if self.lanes else 0)

    def _note(self, msg: str) -> None:
        # Log a waiting state once, not every half second.
        if msg != self._waiting_note:
            log.info(msg)
            self._waiting_note = msg

    def _current_stream(self) -> str | None:
        try:
            table = self.dynamodb.describe_table(TableName=self.table_name)["Table"]
        except self.dynamodb.exceptions.ResourceNotFoundException:
            self._note(f"waiting for table {self.table_name}")
            return None
        arn = table.get("LatestStreamArn")
        if not arn or not table.get("StreamSpecification", {}).get("StreamEnabled"):
            self._note(f"table {self.table_name} has no stream enabled; waiting")
            return None
        return arn

    def poll_once(self) -> int:
        """One round over every readable shard; returns how many stream records were read."""
        if not self.stream_arn or time.monotonic() >= self._next_discovery:
            # Table/stream/shard discovery is not needed every half second (it would triple
            # the requests): every few seconds, and at once after an error or a closed shard.
            self._next_discovery = time.monotonic() + self.discovery_interval
            arn = self._current_stream()
            if arn != self.stream_arn:
                # New table (first start, or recreated after a moto reset): start on its stream.
                self.stream_arn, self.shards = arn, {}
                if arn:
                    log.info("reading stream %s", arn)
                    self._waiting_note = None
            if not arn:
                return 0
            self._refresh_shards()
        read = 0
        for shard in list(self.shards.values()):
            parent = self.shards.get(shard.parent) if shard.parent else None
            if shard.done or (parent is not None and not parent.done):
                continue  # parents first, so each key's changes stay in order
            read += self._read_shard(shard)
        return read

    def _refresh_shards(self) -> None:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            desc = self.streams.describe_stream(**kwargs)["StreamDescription"]
            for s in desc.get("Shards", []):
                if s["ShardId"] not in self.shards:
                    self.shards[s["ShardId"]] = Shard(s["ShardId"], s.get("ParentShardId"))
            last = desc.get("LastEvaluatedShardId")
            if not last:
                return
            kwargs["ExclusiveStartShardId"] = last

    def _read_shard(self, shard: Shard) -> int:
        if shard.iterator is None:
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard.shard_id}
            if shard.checkpoint:
                kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.checkpoint)
            else:
                kwargs.update(ShardIteratorType="TRIM_HORIZON")
            shard.iterator = self.streams.get_shard_iterator(**kwargs)["ShardIterator"]
        try:
            resp = self.streams.get_records(ShardIterator=shard.iterator, Limit=1000)
        except Exception as e:  # noqa: BLE001 - expired/unknown iterator: re-acquire from checkpoint
            log.warning("get_records on %s failed (%s); re-acquiring the iterator", shard.shard_id, e)
            shard.iterator = None
            self._next_discovery = 0.0  # maybe the table is gone or was recreated
            return 0
        raw = resp.get("Records", [])
        records = [to_lambda_record(r, self.stream_arn or "", self.region) for r in raw]
        matching = [r for r in records if passes(self.filters, r)]
        if self.lanes:
            self.lanes.submit(matching)
        else:
            for i in range(0, len(matching), self.batch_size):
                batch = matching[i:i + self.batch_size]
                self.processor.process(batch)
                self._delivered += len(batch)
        if raw:
            shard.checkpoint = raw[-1]["dynamodb"]["SequenceNumber"]
        shard.iterator = resp.get("NextShardIterator")
        if shard.iterator is None:
            shard.done = True  # closed shard, fully read: its children may start
            self._next_discovery = 0.0
        return len(raw)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: Any) -> None:
    # Raising here also interrupts a long-running invocation or a sleep.
    raise _Stop(signal.Signals(signum).name)


def build_arg_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", default=env("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
                   help="DynamoDB (and Streams) endpoint [env AWS_ENDPOINT_URL_DYNAMODB]")
    p.add_argument("--table", default=env("TABLE_NAME", "music-video-tasks"), help="[env TABLE_NAME]")
    p.add_argument("--invoke-url", default=env("LAMBDA_INVOKE_URL", "http://127.0.0.1:9000"),
                   help="cargo lambda watch base URL [env LAMBDA_INVOKE_URL]")
    p.add_argument("--function-id", default=template_model.INGEST_ID,
                   help="the template function whose DynamoDB event this pump plays (default IngestFunction)")
    p.add_argument("--function", default=None,
                   help="function to invoke (default: that function's Metadata.Binary)")
    p.add_argument("--poll-interval", type=float, default=float(env("PUMP_POLL_INTERVAL", "0.5")))
    p.add_argument("--retry-delay", type=float, default=float(env("PUMP_RETRY_DELAY", "1.0")))
    p.add_argument("--max-retries", type=int, default=_int_or_none(env("PUMP_MAX_RETRIES")),
                   help="cap on the template's MaximumRetryAttempts [env PUMP_MAX_RETRIES]")
    p.add_argument("--invoke-timeout", type=float, default=float(env("PUMP_INVOKE_TIMEOUT", "900")))
    default_dead_letters = template_model.REPO_ROOT / ".local" / "dead-letters.jsonl"
    p.add_argument("--dead-letter-file", type=Path,
                   default=Path(env("PUMP_DEAD_LETTER_FILE", str(default_dead_letters))))
    p.add_argument("--template", type=Path, default=template_model.TEMPLATE_PATH)
    p.add_argument("--parallelization", type=int, default=_int_or_none(env("PUMP_PARALLELIZATION")),
                   help="override the template's ParallelizationFactor [env PUMP_PARALLELIZATION]")
    return p


def _int_or_none(v: str | None) -> int | None:
    return int(v) if v not in (None, "") else None


def effective_max_retries(template_value: int, cap: int | None) -> int:
    """min(template, cap), where a negative template value means unlimited."""
    if cap is None or cap < 0:
        return template_value
    return cap if template_value < 0 else min(template_value, cap)


def build_pump(args: argparse.Namespace) -> StreamPump:
    import boto3  # imported here so the unit tests of the pure parts need no AWS config

    template = template_model.load_template(args.template)
    esm = template_model.stream_event_source(args.function_id, template)
    function = args.function or _binary(template, args.function_id)
    region = os.environ.get("AWS_REGION", "us-east-1")
    creds = {
        "region_name": region,
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "endpoint_url": args.endpoint,
    }
    max_retries = effective_max_retries(esm["MaximumRetryAttempts"], args.max_retries)
    url = f"{args.invoke_url.rstrip('/')}/2015-03-31/functions/{function}/invocations"
    processor = BatchProcessor(
        http_invoker(url, args.invoke_timeout),
        max_retries=max_retries,
        bisect=esm["BisectBatchOnFunctionError"],
        report_item_failures="ReportBatchItemFailures" in esm["FunctionResponseTypes"],
        retry_delay=args.retry_delay,
        dead_letter_path=args.dead_letter_file,
    )
    parallelization = args.parallelization or esm["ParallelizationFactor"]
    pump = StreamPump(boto3.client("dynamodb", **creds), boto3.client("dynamodbstreams", **creds),
                      args.table, processor, esm["filters"], esm["BatchSize"], region, parallelization)
    log.info("%s: table=%s endpoint=%s -> %s; %d filter(s), BatchSize=%d, ParallelizationFactor=%d, "
             "MaximumRetryAttempts=%s, Bisect=%s, FunctionResponseTypes=%s", args.function_id, args.table,
             args.endpoint, url,
             len(esm["filters"]), esm["BatchSize"], parallelization,
             "unlimited" if max_retries < 0 else max_retries,
             esm["BisectBatchOnFunctionError"], esm["FunctionResponseTypes"])
    return pump


def _binary(template: dict[str, Any], function_id: str) -> str:
    res = template["Resources"].get(function_id, {})
    binary = ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary") \
        or (res.get("Metadata") or {}).get("Binary")
    if not binary:
        raise template_model.TemplateError(f"{function_id} names no Metadata.BuildProperties.Binary")
    return binary


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    name = "stream-pump" if args.function_id == template_model.INGEST_ID else f"stream-pump {args.function_id}"
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s [{name}] %(levelname)s %(message)s")
    try:
        pump = build_pump(args)
    except (template_model.TemplateError, PatternError) as e:
        log.error("%s", e)
        return 2
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        while True:
            try:
                read = pump.poll_once()
            except _Stop:
                raise
            except Exception as e:  # noqa: BLE001 - moto restarting, connection reset, ...
                pump._note(f"poll failed ({type(e).__name__}: {e}); retrying")
                pump._next_discovery = 0.0
                read = 0
            if not read:
                time.sleep(args.poll_interval)
    except _Stop as s:
        log.info("stopping on %s", s)
        return 0


if __name__ == "__main__":
    sys.exit(main())
