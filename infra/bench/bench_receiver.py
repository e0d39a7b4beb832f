"""Receiver micro-benchmarks: runs the criterion benches (`benches/benches/receiver.rs`) and
prints each median next to the baseline measured in the same run, as a ratio.

    make bench-receiver        # = python3 infra/bench/bench_receiver.py

Groups: `parse` (our envelope parse vs serde_json into an untyped value) and `verify` (each
scheme on a genuine callback vs one HMAC-SHA256 of the body). The target for every piece
is 10 µs; the table says whether each met it (a report, never a failing test).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET_NS = 10_000
BASELINES = {"parse": "baseline-serde_json-value", "verify": "baseline-hmac-sha256"}


def criterion_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "criterion"


def median_ns(group: str, bench: str) -> float:
    estimates = criterion_dir() / group / bench / "new" / "estimates.json"
    return float(json.loads(estimates.read_text())["median"]["point_estimate"])


def main() -> int:
    run = subprocess.run(["cargo", "bench", "--package", "benches", "--bench", "receiver"], cwd=REPO)
    if run.returncode != 0:
        return run.returncode
    print()
    print("| group | benchmark | median | × baseline | ≤ 10 µs |")
    print("|---|---|---:|---:|---|")
    for group, baseline in BASELINES.items():
        base = median_ns(group, baseline)
        benches = sorted(p.name for p in (criterion_dir() / group).iterdir() if (p / "new").is_dir())
        for bench in [baseline] + [b for b in benches if b != baseline]:
            ns = median_ns(group, bench)
            shown = f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"
            ratio = "1.00 (baseline)" if bench == baseline else f"{ns / base:.2f}"
            met = "" if bench == baseline else ("yes" if ns <= TARGET_NS else "NO")
            print(f"| {group} | {bench} | {shown} | {ratio} | {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
