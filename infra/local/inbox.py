"""The local notification inbox: a webhook receiver for the local stack and its tests.

Every POST under /hooks/<name> is recorded (headers, body, arrival time) and, when the
inbox knows <name>'s signing secret, its Standard Webhooks signature is checked: the HMAC-SHA256
of `id.timestamp.body` under the `whsec_` key, compared in constant time with each `v1,`
entry of `webhook-signature`. The answer is scripted per name (for the retry, 410, 429 and
chat-error cases), 200 once the script is used up.

    PUT  /_secret/<name>     body: the endpoint's whsec_ secret (as `POST /endpoints` returned it)
    PUT  /_script/<name>     body: [{"status": 503, "body": "...", "headers": {...}, "delay_s": 0,
                                    "match": "only for bodies containing this"}, ...]
    GET  /_requests/<name>   what arrived, oldest first: [{"headers", "body", "signature", "at"}, ...]
    POST /hooks/<name>       a notification

Binds 127.0.0.1 only. Every request is also appended to --log (one JSON line each).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
MAX_BODY = 1 << 20


def verify(secret: str, headers: dict[str, str], body: bytes, now: float, tolerance_s: int = 300) -> str:
    """`valid`, `unsigned` or why not: Standard Webhooks, as the specification states it."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and ts and sigs):
        return "unsigned"
    try:
        if abs(now - int(ts)) > tolerance_s:
            return "stale_timestamp"
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        return "bad_secret_or_timestamp"
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest())
    for entry in sigs.split():
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return "valid"
    return "invalid"


class Inbox:
    def __init__(self, log_path: Path | None) -> None:
        self.lock = threading.Lock()
        self.secrets: dict[str, str] = {}
        self.scripts: dict[str, list[dict[str, Any]]] = {}
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self.log_path = log_path

    def record(self, name: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        with self.lock:
            secret = self.secrets.get(name)
            entry = {
                "at": time.time(),
                "headers": headers,
                "body": body.decode("utf-8", "replace"),
                "signature": verify(secret, headers, body, time.time()) if secret else "no_secret",
            }
            self.requests.setdefault(name, []).append(entry)
            answer = self._next_answer(name, entry["body"])
        if self.log_path:
            with self.lock, self.log_path.open("a") as f:
                f.write(json.dumps({"hook": name, **entry, "answered": answer.get("status", 200)}) + "\n")
        return answer


    def _next_answer(self, name: str, body: str) -> dict[str, Any]:
        # The first scripted answer for this request (one with "match" only answers a
        # body containing it), used up; 200 when none is left.
        script = self.scripts.get(name, [])
        for i, answer in enumerate(script):
            if answer.get("match") is None or str(answer["match"]) in body:
                return script.pop(i)
        return {"status": 200}


def handler_for(inbox: Inbox) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write("[inbox] " + fmt % args + "\n")

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(min(n, MAX_BODY))

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _name(self, prefix: str) -> str | None:
            path = self.path.split("?", 1)[0]
            if not path.startswith(prefix):
                return None
            name = path[len(prefix):].strip("/")
            return name if name and "/" not in name else None

        def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
            body = self._body()
            if (name := self._name("/_secret/")) is not None:
                with inbox.lock:
                    inbox.secrets[name] = body.decode().strip()
                return self._send(204)
            if (name := self._name("/_script/")) is not None:
                try:
                    script = json.loads(body)
                    assert isinstance(script, list) and all(isinstance(s, dict) for s in script)
                except (ValueError, AssertionError):
                    return self._send(400, b'{"error":"a JSON list of answers"}')
                with inbox.lock:
                    inbox.scripts[name] = script
                return self._send(204)
            self._send(404)

        def do_GET(self) -> None:  # noqa: N802
            if (name := self._name("/_requests/")) is not None:
                with inbox.lock:
                    got = list(inbox.requests.get(name, []))
                return self._send(200, json.dumps(got).encode())
            self._send(404)

        def do_POST(self) -> None:  # noqa: N802
            name = self._name("/hooks/")
            body = self._body()
            if name is None:
                return self._send(404)
            headers = {k: v for k, v in self.headers.items()}
            answer = inbox.record(name, headers, body)
            if answer.get("delay_s"):
                time.sleep(float(answer["delay_s"]))
            self._send(int(answer.get("status", 200)), str(answer.get("body", '{"ok":true}')).encode(),
                       {"Content-Type": "application/json", **(answer.get("headers") or {})})

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", type=Path, default=None)
    args = p.parse_args(argv)
    server = http.server.ThreadingHTTPServer((HOST, args.port), handler_for(Inbox(args.log)))
    server.daemon_threads = True
    print(f"inbox on http://{HOST}:{args.port}/hooks/<name>", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
