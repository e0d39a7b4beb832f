"""Binary size and start-up benchmark (`make bench-size`).

  size      `cargo lambda build --release --arm64` (what `sam build` deploys): each
            function's `bootstrap`, in MiB; target ≤ 8 MiB.
  start-up  the release binary for this machine started as Lambda starts it, under a minimal
            Lambda Runtime API: from the process's spawn to its first
            `GET /runtime/invocation/next` (the moment it is ready for its first event),
            median and max of `--runs` starts; target ≤ 30 ms. Configuration from the
            environment (no secret fetch: that is a network call, not start-up), no AWS
            call at start (credentials from the environment, IMDS disabled).
  baseline  the same measurement for `/bin/true` started the same way, so the process
            spawn's own cost on this machine is visible in the same run.

    python3 infra/bench/bench_size.py [--runs 20] [--skip-arm64]
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "local"))
import stack as local  # noqa: E402
from bench_ingest import RELEASE_BINS  # noqa: E402

REPO = local.REPO
OUT = local.LOCAL / "bench"
MIB = 1024 * 1024
RUNTIME_PORT = 8398
FUNCTIONS = ("receiver", "ingest", "status", "reconciler", "notify", "deliver")
# Enough configuration for each function to reach its runtime loop.
ENV = {
    "TABLE_NAME": "t", "BUCKET_NAME": "b", "CALLBACK_TOKENS": "bench-token-0123456789",
    "DELIVERIES_TABLE_NAME": "d", "ENDPOINTS_TABLE_NAME": "e", "ENDPOINT_SECRETS_PREFIX": "bench/endpoints/",
    "JOBS_QUEUE_URL": "http://127.0.0.1:9/123456789012/jobs",
    "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench", "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
    "RUST_LOG": "info",
}


class FirstNext:
    """A Runtime API that records when `/runtime/invocation/next` is first asked for and
    then holds the request (the function waits, as it would for an event)."""

    def __init__(self, port: int) -> None:
        self.asked = threading.Event()
        self.at = 0.0
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if not api.asked.is_set():
                    api.at = time.monotonic()
                    api.asked.set()
                time.sleep(5)  # never answer: the process is killed meanwhile

        self.server = http.server.ThreadingHTTPServer((local.HOST, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_time(binary: Path, env: dict[str, str]) -> float:
    """Seconds from spawn to the first `next`."""
    api = FirstNext(RUNTIME_PORT)
    try:
        started = time.monotonic()
        proc = subprocess.Popen([str(binary)], env={**env, "AWS_LAMBDA_RUNTIME_API": f"{local.HOST}:{RUNTIME_PORT}"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = api.asked.wait(10)
        proc.kill()
        proc.wait()
        if not ready:
            raise SystemExit(f"{binary.name} never asked for an event")
        return api.at - started
    finally:
        api.close()


def spawn_time() -> float:
    started = time.monotonic()
    subprocess.run(["/bin/true"], check=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skip-arm64", action="store_true", help="only the start-up (the arm64 build takes minutes)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    lines = ["| function | arm64 bootstrap MiB | start → ready, median ms | max ms |", "|---|---:|---:|---:|"]
    sizes: dict[str, float] = {}
    if not args.skip_arm64:
        local.say("cargo lambda build --release --arm64 (minutes)")
        subprocess.run(["rustup", "target", "add", "aarch64-unknown-linux-gnu"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["cargo", "lambda", "build", "--release", "--arm64", "--lambda-dir", "target/lambda-arm64"],
                       cwd=REPO, check=True)
        for name in FUNCTIONS:
            sizes[name] = (REPO / "target/lambda-arm64" / name / "bootstrap").stat().st_size / MIB
    local.say("cargo build --release (this machine's binaries, for the start-up)")
    subprocess.run(["cargo", "build", "--release", "--quiet", *RELEASE_BINS], cwd=REPO, check=True)
    env = {"PATH": os.environ["PATH"], **ENV}
    baseline = [spawn_time() for _ in range(args.runs)]
    for name in FUNCTIONS:
        binary = REPO / "target/release" / name
        times = [start_time(binary, env) for _ in range(args.runs)]
        size = f"{sizes[name]:.2f}" if name in sizes else "–"
        lines.append(f"| {name} | {size} | {statistics.median(times) * 1000:.1f} | {max(times) * 1000:.1f} |")
        local.say(lines[-1])
    lines.append(f"| (baseline: spawn of /bin/true) | – | {statistics.median(baseline) * 1000:.1f} | "
                 f"{max(baseline) * 1000:.1f} |")
    table = "\n".join(lines)
    (OUT / "size.md").write_text(table + "\n")
    print("\n" + table + f"\n\n({args.runs} starts each; {os.cpu_count()} CPUs; written to {OUT / 'size.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
