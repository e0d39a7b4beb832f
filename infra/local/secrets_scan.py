"""Scans the local stack's logs for secrets: `make test` runs it after every suite has sent
its traffic through a stack whose functions log at trace.

    python3 infra/local/secrets_scan.py [--logs .local/logs] [--env .local/functions.env]

What counts as a leak, in any line of any log the product writes (the four functions
under cargo lambda watch, the stream pump, the reconciler's schedule):
  - any configured secret, verbatim: each callback token, upstream HMAC secret, Standard
    Webhooks secret (whole, and its key part), the upstream API key;
  - a presigned or SigV4-signed URL's signature or credential (`X-Amz-Signature=`,
    `X-Amz-Credential=`), a SigV4 `Authorization` header, a `Bearer` credential.

The stand-ins for third-party services (moto, SeaweedFS, the simulated upstream API, the
file server) are not the product; their logs are listed as skipped, with why. Prints one
SECRETS line (files, lines, secrets checked, leaks) and exits 1 on any leak, naming the
file, line number and kind, never the secret itself.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import stack  # noqa: E402

# Logs of the product and of its local plumbing.
SCANNED = ("cargo-lambda.log", "stream-pump.log", "notify-pump.log", "queue-pump.log", "inbox.log",
           "reconcile-schedule.log", "cargo-build.log")
# Stand-ins for services a deployment does not run; what they log is theirs.
SKIPPED = {
    "moto.log": "DynamoDB stand-in (AWS's own service in a deployment)",
    "moto-secrets.log": "Secrets Manager stand-in (AWS's own service in a deployment)",
    "seaweedfs.log": "S3 stand-in (AWS's own service in a deployment)",
    "upstream-api.log": "the simulated upstream API (the vendor's service in a deployment)",
    "files.log": "static file server for sample videos (a CDN in a deployment)",
}
# Environment variables whose values are secrets (comma/space-separated lists).
SECRET_VARS = ("CALLBACK_TOKENS", "UPSTREAM_HMAC_SECRETS", "STANDARD_WEBHOOKS_SECRETS", "UPSTREAM_API_KEY")
PATTERNS = {
    "presigned-signature": re.compile(r"x-amz-signature=", re.I),
    "presigned-credential": re.compile(r"x-amz-credential=", re.I),
    "sigv4-authorization": re.compile(r"AWS4-HMAC-SHA256\s+Credential=", re.I),
    "bearer-credential": re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{8,}"),
}
MIN_SECRET_LEN = 8  # shorter values ("test") would match everywhere and protect nothing


@dataclass
class Leak:
    file: str
    line: int
    kind: str


def secrets_from_env(env: dict[str, str]) -> dict[str, str]:
    """kind -> secret value, for every secret the functions were configured with."""
    out: dict[str, str] = {}
    for var in SECRET_VARS:
        for i, value in enumerate(v for v in re.split(r"[,\s]+", env.get(var, "")) if v):
            if len(value) < MIN_SECRET_LEN:
                continue
            out[f"{var}[{i}]"] = value
            if value.startswith("whsec_") and len(value) > len("whsec_") + MIN_SECRET_LEN:
                out[f"{var}[{i}].key"] = value[len("whsec_"):]
    return out


def scan_lines(name: str, lines: list[str], secrets: dict[str, str]) -> list[Leak]:
    leaks = []
    for n, line in enumerate(lines, 1):
        for kind, value in secrets.items():
            if value in line:
                leaks.append(Leak(name, n, kind))
        for kind, pattern in PATTERNS.items():
            if pattern.search(line):
                leaks.append(Leak(name, n, kind))
    return leaks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=Path, default=stack.LOGS)
    p.add_argument("--env", type=Path, default=stack.FUNCTIONS_ENV)
    p.add_argument("--secret-env", type=Path, default=stack.SECRET_ENV,
                   help="the configuration secret's variables (the functions read them from Secrets Manager)")
    args = p.parse_args(argv)

    env = stack.read_env_file(args.env)
    if args.secret_env.exists():
        env.update(stack.read_env_file(args.secret_env))
    secrets = secrets_from_env(env)
    if not secrets:
        print(f"secrets_scan: no secrets configured in {args.env}: nothing to look for", file=sys.stderr)
        return 1
    leaks: list[Leak] = []
    files = lines = 0
    for name in SCANNED:
        path = args.logs / name
        if not path.exists():
            continue
        text = path.read_text(errors="replace").splitlines()
        files += 1
        lines += len(text)
        leaks.extend(scan_lines(name, text, secrets))
    for name, why in SKIPPED.items():
        if (args.logs / name).exists():
            print(f"secrets_scan: skipped {name}: {why}")
    level = env.get("RUST_LOG", "?")
    for leak in leaks[:50]:
        print(f"LEAK {leak.file}:{leak.line}: {leak.kind}")
    print(f"SECRETS scanned {files} logs, {lines} lines (functions at RUST_LOG={level}); "
          f"{len(secrets)} secrets and {len(PATTERNS)} credential patterns looked for; leaks {len(leaks)}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
