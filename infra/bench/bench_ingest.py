"""Ingest benchmark (`make bench-ingest`): how fast and in how much memory ingest copies
a video from an HTTP server into S3, against two baselines measured in the same run.

For each size (100 MiB and 1 GiB by default), from one local video server:
  curl     `curl -o /dev/null`: the source limit (download only, nothing stored)
  rclone   `rclone copyurl` into the same bucket (Debian's rclone, default settings)
  sink     the sink's own limit: `sink-limit` (benches/src/bin/sink_limit.rs) uploads the same
           number of bytes from memory into the same bucket through ingest's S3 adapter, with the
           same part size, concurrency and checksums, and no source; it also times the commit's
           last step both ways on the object (the in-place CopyObject ingest used to make, and
           the PutObjectTagging that replaced it)
  ingest   the release `ingest` binary, invoked through a minimal Lambda Runtime API with
           a real-shaped DynamoDB stream event, exactly as Lambda would; the task must end
           `stored` with the source's SHA-256 or the run fails
Each is run REPS times (interleaved); the table reports the median throughput, the peak RSS
(GNU time's maximum resident set size) and the CPU seconds of the client, the S3 server and
the video server, which shows where the bottleneck is.

    python3 infra/bench/bench_ingest.py [--sizes 100M,1G] [--reps 3]

Needs: moto, SeaweedFS and cargo-lambda's toolchain (as `make run`), curl, rclone (installed
with apt-get if missing), /usr/bin/time. Refuses to run while the local stack is up.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "local"))
import stack as local  # noqa: E402

REPO = local.REPO
OUT = local.LOCAL / "bench"
MIB = 1024 * 1024
# Ports apart from the dev stack's defaults.
DYNAMODB_PORT, S3_PORT, VIDEO_PORT, RUNTIME_PORT = 8100, 8433, 8199, 8198
TABLE, BUCKET = "bench-tasks", "bench-videos"
FIXTURE = REPO / "shared" / "src" / "test_support" / "fixtures" / "dynamodb-stream-received.json"


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def human(n: int) -> str:
    return f"{n // (1024 * MIB)} GiB" if n % (1024 * MIB) == 0 else f"{n // MIB} MiB"


@dataclass
class Run:
    tool: str
    size: int
    seconds: float
    peak_rss_kib: int
    client_cpu: float
    s3_cpu: float
    source_cpu: float

    @property
    def mib_s(self) -> float:
        return self.size / MIB / self.seconds


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Runs argv under GNU time: (elapsed s, peak RSS KiB, user+sys s)."""
    out = OUT / "time.txt"
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-o", str(out), "-f", "%M %U %S", *argv], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rss, user, system = out.read_text().split()[-3:]
    return elapsed, int(rss), float(user) + float(system)


class RuntimeApi:
    """The three Lambda Runtime API calls a function makes: hands out one event per
    `invoke`, records the response and when it came."""

    def __init__(self, port: int) -> None:
        self.events: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self.responses: queue.Queue[tuple[str, float, bytes]] = queue.Queue()
        self.handed_out: dict[str, float] = {}
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if not self.path.endswith("/runtime/invocation/next"):
                    self.send_error(404)
                    return
                event = api.events.get()
                if event is None:  # closing: release a /next left waiting by a stopped runtime
                    self.send_error(410)
                    return
                request_id, body = event
                api.handed_out[request_id] = time.monotonic()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:us-east-1:123456789012:function:bench-ingest")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                parts = self.path.split("/")
                kind = parts[-1]
                request_id = parts[-2] if kind in ("response", "error") else "init"
                api.responses.put((f"{kind}:{request_id}", time.monotonic(), body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer((local.HOST, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.events.put(None)
        self.server.shutdown()
        self.server.server_close()


def task_item(task_id: str, url: str) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    s = lambda v: {"S": v}  # noqa: E731
    n = lambda v: {"N": str(v)}  # noqa: E731
    return {
        "task_id": s(task_id), "status": s("received"), "open_status": s("received"), "video_url": s(url),
        "upstream_code": n(200), "upstream_msg": s("MP4 generated successfully."), "received_at": s(now),
        "updated_at": s(now), "last_callback_at": s(now), "callback_count": n(1),
        "expires_at": n(int(time.time()) + 86_400), "revision": n(1), "attempts": n(0),
    }


@dataclass
class Bench:
    cfg: local.Config
    stack: local.Stack
    seaweed_pid: int
    source_pid: int
    videos: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (bytes, sha256)
    commits: list[tuple[int, float, float]] = field(default_factory=list)  # (size, copy s, tag s)

    def cpu(self) -> tuple[float, float]:
        return cpu_seconds(self.seaweed_pid), cpu_seconds(self.source_pid)

    def measure(self, tool: str, size: int, fn) -> Run:  # noqa: ANN001
        s3_before, source_before = self.cpu()
        seconds, rss, client_cpu = fn()
        s3_after, source_after = self.cpu()
        return Run(tool, size, seconds, rss, client_cpu, s3_after - s3_before, source_after - source_before)

    def url(self, path: str) -> str:
        return f"http://{local.HOST}:{VIDEO_PORT}{path}"

    def curl(self, path: str) -> tuple[float, int, float]:
        return timed(["curl", "-sS", "--fail", "-o", "/dev/null", self.url(path)])

    def rclone(self, path: str) -> tuple[float, int, float]:
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # rclone 1.60 chokes on it
        env.update({
            "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": self.cfg.s3_url, "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": "test",
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": "test", "RCLONE_CONFIG_BENCH_REGION": local.REGION,
        })
        target = f"bench:{BUCKET}/rclone/{uuid.uuid4().hex}.mp4"
        return timed(["rclone", "copyurl", self.url(path), target], env=env)

    def sink(self, size: int, binary: Path) -> tuple[float, int, float]:
        """The sink limit: the upload's own timing (the process start and the SDK's set-up
        are not the sink's); records the commit's copy and tagging times."""
        env = {"PATH": os.environ["PATH"], **self.cfg.aws_env(), "AWS_EC2_METADATA_DISABLED": "true"}
        key = f"sink/{uuid.uuid4().hex}.mp4"
        out = OUT / "sink.json"
        time_out = OUT / "sink-time.txt"
        with open(out, "w") as stdout:
            proc = subprocess.run(["/usr/bin/time", "-o", str(time_out), "-f", "%M %U %S", str(binary), BUCKET,
                                   key, str(size), str(8 * MIB), "4"], env=env, stdout=stdout,
                                  stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"sink-limit failed ({proc.returncode}): {proc.stderr[-2000:]}")
        figures = json.loads(out.read_text().strip().splitlines()[-1])
        self.commits.append((size, figures["copy_s"], figures["tag_s"]))
        rss, user, system = time_out.read_text().split()[-3:]
        return figures["upload_s"], int(rss), float(user) + float(system)

    def ingest(self, path: str, binary: Path) -> tuple[float, int, float]:
        size, sha256 = self.videos[path]
        task_id = f"bench-{uuid.uuid4().hex[:12]}"
        item = task_item(task_id, self.url(path))
        local.boto("dynamodb", self.cfg).put_item(TableName=TABLE, Item=item)
        event = json.loads(FIXTURE.read_text())
        event["Records"][0]["dynamodb"]["NewImage"] = item
        event["Records"][0]["dynamodb"]["Keys"] = {"task_id": item["task_id"]}

        api = RuntimeApi(RUNTIME_PORT)
        request_id = str(uuid.uuid4())
        api.events.put((request_id, json.dumps(event).encode()))
        env = {
            "PATH": os.environ["PATH"], **self.cfg.aws_env(), "AWS_EC2_METADATA_DISABLED": "true",
            "TABLE_NAME": TABLE, "BUCKET_NAME": BUCKET, "S3_FORCE_PATH_STYLE": "true",
            "VIDEO_URL_ALLOW_HTTP": "true", "VIDEO_URL_ALLOW_LOOPBACK": "true", "RUST_LOG": "info",
            "AWS_LAMBDA_RUNTIME_API": f"{local.HOST}:{RUNTIME_PORT}", "AWS_LAMBDA_FUNCTION_NAME": "bench-ingest",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench-ingest", "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        }
        time_out = OUT / "ingest-time.txt"
        with open(OUT / "ingest.log", "a") as log:
            proc = subprocess.Popen(["/usr/bin/time", "-o", str(time_out), "-f", "%M %U %S", str(binary)],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                kind, answered, body = api.responses.get(timeout=900)
            finally:
                # The runtime now waits for its next event: stop it, then read GNU time's figures.
                subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)])
                proc.wait(timeout=30)
                api.close()
        if kind != f"response:{request_id}":
            raise SystemExit(f"ingest answered {kind}: {body[:2000]!r}")
        failures = json.loads(body).get("batchItemFailures")
        if failures:
            raise SystemExit(f"ingest reported a batch item failure: {failures}")
        stored = local.boto("dynamodb", self.cfg).get_item(TableName=TABLE, Key={"task_id": {"S": task_id}},
                                                           ConsistentRead=True)["Item"]
        video = stored.get("video", {}).get("M", {})
        if stored["status"]["S"] != "stored" or video["sha256"]["S"] != sha256 or int(video["bytes"]["N"]) != size:
            raise SystemExit(f"ingest did not store the exact video: {stored}")
        rss, user, system = time_out.read_text().split()[-3:]
        return answered - api.handed_out[request_id], int(rss), float(user) + float(system)


def ensure_rclone() -> None:
    if shutil.which("rclone"):
        return
    local.say("installing rclone (apt-get)")
    subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "rclone"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


# One selection for every benchmark's release build (bench_size.py too), so they share
# one feature resolution and none rebuilds what another built.
RELEASE_BINS = ["-p", "ingest", "--bin", "ingest", "-p", "receiver", "--bin", "receiver", "-p", "status", "--bin",
                "status", "-p", "reconciler", "--bin", "reconciler", "-p", "notify", "--bin", "notify", "-p",
                "deliver", "--bin", "deliver", "-p", "integration-tests", "--bin", "video-server", "-p", "benches",
                "--bin", "sink-limit"]


def build() -> tuple[Path, Path, Path]:
    local.say("cargo build --release (ingest, video-server, sink-limit)")
    subprocess.run(["cargo", "build", "--release", "--quiet", *RELEASE_BINS], cwd=REPO, check=True)
    target = REPO / "target" / "release"
    return target / "ingest", target / "video-server", target / "sink-limit"


def start_source(stack: local.Stack, binary: Path, sizes: list[int]) -> tuple[int, dict[str, tuple[int, str]]]:
    specs = [f"/{human(size).replace(' ', '').lower()}.mp4={size}" for size in sizes]
    child = stack.spawn("bench-video-server", [str(binary), str(VIDEO_PORT), *specs])
    log = local.LOGS / "bench-video-server.log"
    videos: dict[str, tuple[int, str]] = {}
    deadline = time.monotonic() + 120  # hashing 1 GiB takes a few seconds
    while len(videos) < len(sizes):
        if time.monotonic() > deadline or child.exit_code() is not None:
            raise SystemExit(f"video server did not start: {log.read_text()[-2000:]}")
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0].startswith("/"):
                videos[parts[0]] = (int(parts[1]), parts[2])
        time.sleep(0.2)
    return child.pid, videos


def report(runs: list[Run], sizes: list[int], commits: list[tuple[int, float, float]]) -> str:
    def median(tool: str, size: int, key) -> float:  # noqa: ANN001
        return statistics.median(key(r) for r in runs if r.tool == tool and r.size == size)

    lines = [
        "| size | tool | MiB/s (median) | seconds | peak RSS MiB (max) | client CPU s | S3 server CPU s | source CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        for tool in ("curl", "rclone", "sink", "ingest"):
            peak = max(r.peak_rss_kib for r in runs if r.tool == tool and r.size == size) / 1024
            lines.append(
                f"| {human(size)} | {tool} | {median(tool, size, lambda r: r.mib_s):.0f} | "
                f"{median(tool, size, lambda r: r.seconds):.2f} | {peak:.1f} | "
                f"{median(tool, size, lambda r: r.client_cpu):.2f} | {median(tool, size, lambda r: r.s3_cpu):.2f} | "
                f"{median(tool, size, lambda r: r.source_cpu):.2f} |")
    lines += ["", "| size | ingest / sink limit | ingest / rclone | ingest / curl (throughput) |",
              "|---|---:|---:|---:|"]
    for size in sizes:
        ingest = median("ingest", size, lambda r: r.mib_s)
        lines.append(f"| {human(size)} | {ingest / median('sink', size, lambda r: r.mib_s):.2f} | "
                     f"{ingest / median('rclone', size, lambda r: r.mib_s):.2f} | "
                     f"{ingest / median('curl', size, lambda r: r.mib_s):.2f} |")
    lines += ["", "| size | commit step | median ms |", "|---|---|---:|"]
    for size in sizes:
        copies = [c for s, c, _ in commits if s == size]
        tags = [t for s, _, t in commits if s == size]
        if copies:
            lines.append(f"| {human(size)} | in-place CopyObject (before) | {statistics.median(copies) * 1000:.1f} |")
            lines.append(f"| {human(size)} | PutObjectTagging (now) | {statistics.median(tags) * 1000:.1f} |")
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        rss = {s: max(r.peak_rss_kib for r in runs if r.tool == "ingest" and r.size == s) / 1024 for s in (small, big)}
        lines += ["", f"ingest peak RSS: {rss[big]:.1f} MiB at {human(big)}, {rss[small]:.1f} MiB at {human(small)} "
                  f"(ratio {rss[big] / rss[small]:.2f})"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100M,1G")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    if local._already_running():
        raise SystemExit("the local stack is running: stop it first (python3 infra/local/stack.py stop)")

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ingest.log").unlink(missing_ok=True)
    local.ensure_tools()
    ensure_rclone()
    ingest_bin, server_bin, sink_bin = build()
    cfg = local.Config(DYNAMODB_PORT, S3_PORT, 0, 0, 0, 0, TABLE, BUCKET, token="unused", upstream_key="unused",
                       upstream_hmac_secret="unused", webhook_secret="unused")
    stack = local.Stack()
    try:
        local.start_moto(stack, cfg)
        local.create_one_table(cfg, TABLE)
        local.start_seaweedfs(stack, cfg, data=OUT / "seaweedfs")
        seaweed = next(c for c in stack.children if c.name == "seaweedfs")
        source_pid, videos = start_source(stack, server_bin, sizes)
        bench = Bench(cfg, stack, seaweed.pid, source_pid, videos)
        runs: list[Run] = []
        for rep in range(1, args.reps + 1):
            for size in sizes:
                path = next(p for p, (n, _) in videos.items() if n == size)
                for tool, fn in (("curl", lambda: bench.curl(path)), ("rclone", lambda: bench.rclone(path)),
                                 ("sink", lambda: bench.sink(size, sink_bin)),
                                 ("ingest", lambda: bench.ingest(path, ingest_bin))):
                    run = bench.measure(tool, size, fn)
                    runs.append(run)
                    local.say(f"rep {rep} {human(size):>7} {tool:<6} {run.mib_s:7.1f} MiB/s "
                              f"{run.seconds:6.2f} s  RSS {run.peak_rss_kib / 1024:6.1f} MiB  "
                              f"CPU client {run.client_cpu:.2f} s, S3 {run.s3_cpu:.2f} s, source {run.source_cpu:.2f} s")
        table = report(runs, sizes, bench.commits)
        (OUT / "results.md").write_text(table + "\n")
        (OUT / "runs.json").write_text(json.dumps([r.__dict__ for r in runs], indent=1))
        print("\n" + table + f"\n\n(written to {OUT / 'results.md'}; raw runs in runs.json; "
              f"{os.cpu_count()} CPUs, SeaweedFS as the S3 server)")
        return 0
    finally:
        stack.stop_all()


if __name__ == "__main__":
    sys.exit(main())
