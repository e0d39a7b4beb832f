"""Answer-time benchmark (`make bench-answer`): how long the sender waits for its 200, for
10 MiB, 100 MiB and 1 GiB videos, from our receiver and from a naive baseline.

  ours    the receiver under the local stack (cargo lambda watch, moto): verify, one
          conditional write, answer. The video is never touched on this path.
  naive   a baseline written for this benchmark in the style of the upstream's example
          receiver (../shared/seeds: Flask, `requests.get(video_url)`, write the file, then
          answer): here Python's http.server, `urllib` reading the whole body into memory,
          writing it to a file, then answering 200.

Both get the same real-shaped success callbacks, `--concurrency` at a time, for videos served
by the same local video server (tests/support/bin/video_server.rs). The table gives p50, p99
and max answer time and the share of answers later than the sender's 15 s, per size, and the
ratio naive / ours of the p50s (same run, same machine).

    python3 infra/bench/bench_answer.py [--sizes 10M,100M,1G] [--callbacks 500]
                                        [--naive-callbacks 500,500,64] [--concurrency 8]

The stack is started here with MAX_VIDEO_BYTES=1 MiB for ingest, so that 1 500 background
downloads do not compete with the receivers for the machine's cores: ingest declines each
video from its Content-Length (the receiver's path is the same whatever ingest does). The
naive receiver holds each video in memory while it downloads it, so at 1 GiB it runs fewer
callbacks (`--naive-callbacks`): 500 would take twenty minutes and `concurrency` GiB of RAM.
Refuses to run while a local stack is up.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "local"))
import stack as local  # noqa: E402
from bench_ingest import RELEASE_BINS, human, parse_size  # noqa: E402

REPO = local.REPO
OUT = local.LOCAL / "bench"
MIB = 1024 * 1024
SENDER_TIMEOUT_S = 15.0
# Ports apart from the dev stack's defaults (and bench_ingest's).
NAIVE_PORT, VIDEO_PORT = 8297, 8299
STACK_PORTS = {"DYNAMODB_PORT": "8200", "S3_PORT": "8533", "LAMBDA_PORT": "8201", "FILES_PORT": "8202",
               "UPSTREAM_PORT": "8203", "INBOX_PORT": "8204", "SECRETS_PORT": "8205"}


def start_videos(binary: Path, sizes: list[int]) -> tuple[subprocess.Popen, dict[str, int]]:
    """The video server (its own process, outside the stack's pid file): path -> bytes."""
    log = OUT / "answer-video-server.log"
    specs = [f"/{human(size).replace(' ', '').lower()}.mp4={size}" for size in sizes]
    with open(log, "w") as out:
        proc = subprocess.Popen([str(binary), str(VIDEO_PORT), *specs], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    videos: dict[str, int] = {}
    deadline = time.monotonic() + 120  # hashing 1 GiB takes a few seconds
    while len(videos) < len(sizes):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"video server did not start: {log.read_text()[-2000:]}")
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0].startswith("/"):
                videos[parts[0]] = int(parts[1])
        time.sleep(0.2)
    return proc, videos


class NaiveReceiver:
    """The upstream's example receiver, in the standard library: download inside the
    request, then answer."""

    def __init__(self, port: int, directory: Path) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                callback = data.get("data") or {}
                task_id, video_url = callback.get("task_id"), callback.get("video_url")
                if data.get("code") == 200 and video_url:
                    try:
                        with urllib.request.urlopen(video_url, timeout=600) as response:  # noqa: S310
                            content = response.read()  # requests.get(video_url).content
                        path = directory / f"music_video_{task_id}.mp4"
                        path.write_bytes(content)
                        path.unlink()  # (the example keeps it; the benchmark has no disk for that)
                    except OSError as e:
                        print(f"download failed: {e}", file=sys.stderr)
                body = b'{"status": "received"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer((local.HOST, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{local.HOST}:{port}/music-video-callback"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def post(url: str, task_id: str, video_url: str) -> float:
    """One callback; seconds until the answer (an answer other than 200 fails the run)."""
    body = json.dumps({"code": 200, "msg": "MP4 generated successfully.",
                       "data": {"task_id": task_id, "video_url": video_url}}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=900) as response:  # noqa: S310
        response.read()
        status = response.status
    elapsed = time.monotonic() - started
    if status != 200:
        raise SystemExit(f"{url} answered {status}")
    return elapsed


def run(url: str, video_url: str, count: int, concurrency: int) -> list[float]:
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(post, url, f"bench-answer-{uuid.uuid4().hex[:16]}", video_url)
                   for _ in range(count)]
        return [f.result() for f in futures]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(size: int, who: str, times: list[float]) -> str:
    late = sum(t > SENDER_TIMEOUT_S for t in times) / len(times)
    return (f"| {human(size)} | {who} | {len(times)} | {statistics.median(times) * 1000:.0f} | "
            f"{quantile(times, 0.99) * 1000:.0f} | {max(times) * 1000:.0f} | {late:.0%} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10M,100M,1G")
    parser.add_argument("--callbacks", type=int, default=500)
    parser.add_argument("--naive-callbacks", default="500,500,64")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    naive_counts = [int(n) for n in args.naive_callbacks.split(",")]
    if len(naive_counts) != len(sizes):
        raise SystemExit("--naive-callbacks needs one count per size")
    if local._already_running():
        raise SystemExit("the local stack is running: stop it first (python3 infra/local/stack.py stop)")

    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **STACK_PORTS, "STACK_EXTRA_ENV": "MAX_VIDEO_BYTES=1048576"}
    local.say("starting the local stack (ingest declines videos over 1 MiB: see the docs)")
    subprocess.run([sys.executable, str(REPO / "infra/local/stack.py"), "start"], env=env, check=True)
    source = None
    naive = None
    try:
        subprocess.run(["cargo", "build", "--release", "--quiet", *RELEASE_BINS], cwd=REPO, check=True)
        source, videos = start_videos(REPO / "target/release/video-server", sizes)
        ours_url = local.read_env_file(local.STACK_ENV)["CALLBACK_URL"]
        naive = NaiveReceiver(NAIVE_PORT, Path(tempfile.mkdtemp(prefix="naive-", dir=OUT)))
        # One warm-up callback each (cargo lambda watch starts the function on first use).
        first = next(iter(videos))
        run(ours_url, f"http://{local.HOST}:{VIDEO_PORT}{first}", 8, min(8, args.concurrency))

        lines = ["| size | receiver | callbacks | p50 ms | p99 ms | max ms | later than 15 s |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        ratios = ["", "| size | naive p50 / ours p50 |", "|---|---:|"]
        raw: dict[str, dict[str, list[float]]] = {}
        for size, naive_count in zip(sizes, naive_counts):
            path = next(p for p, n in videos.items() if n == size)
            video_url = f"http://{local.HOST}:{VIDEO_PORT}{path}"
            ours = run(ours_url, video_url, args.callbacks, args.concurrency)
            local.say(f"{human(size)}: ours p50 {statistics.median(ours) * 1000:.0f} ms")
            theirs = run(naive.url, video_url, naive_count, args.concurrency)
            local.say(f"{human(size)}: naive p50 {statistics.median(theirs) * 1000:.0f} ms")
            lines += [row(size, "ours", ours), row(size, "naive", theirs)]
            ratios.append(f"| {human(size)} | {statistics.median(theirs) / statistics.median(ours):.1f} |")
            raw[human(size)] = {"ours": ours, "naive": theirs}
        table = "\n".join(lines + ratios)
        (OUT / "answer.md").write_text(table + "\n")
        (OUT / "answer.json").write_text(json.dumps(raw))
        print("\n" + table + f"\n\n(concurrency {args.concurrency}; {os.cpu_count()} CPUs; written to "
              f"{OUT / 'answer.md'})")
        return 0
    finally:
        if naive:
            naive.close()
        if source:
            source.kill()
            source.wait()
        subprocess.run([sys.executable, str(REPO / "infra/local/stack.py"), "stop"], env=env, check=False)


if __name__ == "__main__":
    sys.exit(main())
