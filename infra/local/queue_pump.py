"""Local stand-in for the Lambda event source mapping of the deliver function's SQS queue.

Long-polls the job queue on moto, hands each batch (up to the template's BatchSize) to the
function through `cargo lambda watch`, and then does what the ESM does with
ReportBatchItemFailures:

- a 200 answer: every message not named in `batchItemFailures` is deleted; the named ones
  stay, visible again when their visibility timeout ends (the function may have changed
  it: a job kept hidden until its time);
- a function error, a timeout or an unreadable answer: nothing is deleted (every message
  comes back after its visibility timeout, and the queue's redrive policy moves one that
  came back too often to the dead-letter queue).

Message delays (`DelaySeconds`) and visibility are moto's, so early jobs wait as they would.

    python3 infra/local/queue_pump.py --queue-url URL --invoke-url http://127.0.0.1:9000
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import template_model  # noqa: E402
from stream_pump import EndpointDown, http_invoker  # noqa: E402

log = logging.getLogger("queue-pump")


def to_lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A received SQS message as Lambda hands it to the function."""
    attributes = message.get("Attributes") or {}
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {k: attributes[k] for k in ("ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                                  "ApproximateFirstReceiveTimestamp") if k in attributes},
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def to_delete(status: int, headers: dict[str, str], body: bytes, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records the ESM deletes after this answer (see the module docstring)."""
    function_error = {k.lower(): v for k, v in headers.items()}.get("x-amz-function-error")
    if status != 200 or function_error:
        return []
    try:
        payload = json.loads(body) if body.strip() else {}
    except ValueError:
        return []
    if not isinstance(payload, dict):
        return []
    if "errorType" in payload and "batchItemFailures" not in payload:
        return []
    failures = payload.get("batchItemFailures") or []
    known = {r["messageId"] for r in records}
    ids = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
    if not all(isinstance(i, str) and i in known for i in ids):
        return []  # an invalid failure list fails the whole batch, as Lambda does
    return [r for r in records if r["messageId"] not in set(ids)]


class QueuePump:
    def __init__(self, sqs: Any, queue_url: str, invoke: Any, batch_size: int, region: str) -> None:
        self.sqs, self.queue_url, self.invoke = sqs, queue_url, invoke
        self.batch_size, self.region = batch_size, region
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self.stopping = threading.Event()

    def poll_once(self, wait_s: int = 2) -> int:
        got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size,
                                       WaitTimeSeconds=wait_s, AttributeNames=["All"]).get("Messages") or []
        if not got:
            return 0
        records = [to_lambda_record(m, self.queue_arn, self.region) for m in got]
        try:
            status, headers, body = self.invoke({"Records": records})
        except EndpointDown as e:
            log.warning("function not reachable (%s); %d message(s) come back after their visibility timeout",
                        e, len(records))
            return len(records)
        done = to_delete(status, headers, body, records)
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(done)])
        kept = len(records) - len(done)
        log.info("batch of %d: %d done, %d kept (HTTP %d)", len(records), len(done), kept, status)
        return len(records)

    def run_lane(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception as e:  # noqa: BLE001 - moto restarting, connection reset, ...
                log.warning("poll failed (%s: %s); retrying", type(e).__name__, e)
                self.stopping.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s [queue-pump] %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queue-url", required=True)
    p.add_argument("--invoke-url", default=os.environ.get("LAMBDA_INVOKE_URL", "http://127.0.0.1:9000"))
    p.add_argument("--function-id", default="DeliverFunction")
    p.add_argument("--invoke-timeout", type=float, default=900)
    p.add_argument("--lanes", type=int, default=3, help="concurrent pollers (Lambda runs several)")
    p.add_argument("--template", type=Path, default=template_model.TEMPLATE_PATH)
    args = p.parse_args(argv)

    import boto3

    template = template_model.load_template(args.template)
    esm = template_model.queue_event_source(args.function_id, template)
    function = ((template["Resources"][args.function_id].get("Metadata") or {}).get("BuildProperties") or {}).get(
        "Binary", "deliver")
    region = os.environ.get("AWS_REGION", "us-east-1")
    sqs = boto3.client("sqs", region_name=region, endpoint_url=os.environ.get("AWS_ENDPOINT_URL_SQS"),
                       aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
                       aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"))
    url = f"{args.invoke_url.rstrip('/')}/2015-03-31/functions/{function}/invocations"
    pump = QueuePump(sqs, args.queue_url, http_invoker(url, args.invoke_timeout), esm["BatchSize"], region)

    def stop(_signum: int, _frame: Any) -> None:
        pump.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("polling %s -> %s (BatchSize=%d, %d lanes)", args.queue_url, url, esm["BatchSize"], args.lanes)
    lanes = [threading.Thread(target=pump.run_lane, daemon=True) for _ in range(max(1, args.lanes))]
    for lane in lanes:
        lane.start()
    while not pump.stopping.is_set():
        time.sleep(0.2)
    for lane in lanes:
        lane.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
