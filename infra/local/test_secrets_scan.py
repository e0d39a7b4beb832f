"""Tests for the log scanner (secrets_scan.py): it finds each kind of secret it claims to,
in the shapes a log line would hold it, and stays quiet on lines that only look alike.

    python3 -m unittest discover -s infra/local -p 'test_*.py'
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import secrets_scan as ss  # noqa: E402

ENV = {
    "CALLBACK_TOKENS": "tok-aaaaaaaaaaaa,tok-bbbbbbbbbbbb",
    "UPSTREAM_HMAC_SECRETS": "hmac-secret-0123456789",
    "STANDARD_WEBHOOKS_SECRETS": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "UPSTREAM_API_KEY": "sk-upstream-0123456789",
    "AWS_SECRET_ACCESS_KEY": "test",
}


class ScanTest(unittest.TestCase):
    def setUp(self) -> None:
        self.secrets = ss.secrets_from_env(ENV)

    def kinds(self, line: str) -> list[str]:
        return [leak.kind for leak in ss.scan_lines("x.log", [line], self.secrets)]

    def test_every_configured_secret_is_looked_for(self) -> None:
        self.assertEqual(set(self.secrets), {
            "CALLBACK_TOKENS[0]", "CALLBACK_TOKENS[1]", "UPSTREAM_HMAC_SECRETS[0]",
            "STANDARD_WEBHOOKS_SECRETS[0]", "STANDARD_WEBHOOKS_SECRETS[0].key", "UPSTREAM_API_KEY[0]",
        })

    def test_secrets_found_in_the_shapes_logs_hold_them(self) -> None:
        cases = {
            '{"message":"request","query":"token=tok-bbbbbbbbbbbb"}': "CALLBACK_TOKENS[1]",
            '{"config":{"secrets":["hmac-secret-0123456789"]}}': "UPSTREAM_HMAC_SECRETS[0]",
            "key MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw decoded": "STANDARD_WEBHOOKS_SECRETS[0].key",
            "authorization: Bearer sk-upstream-0123456789": "UPSTREAM_API_KEY[0]",
            "GET https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab12":
                "presigned-signature",
            "url=...&x-amz-credential=AKIA%2F20261201": "presigned-credential",
            "authorization: AWS4-HMAC-SHA256 Credential=AKIA/20261201/us-east-1/s3/aws4_request": "sigv4-authorization",
        }
        for line, kind in cases.items():
            self.assertIn(kind, self.kinds(line), line)

    def test_quiet_on_lines_that_only_look_alike(self) -> None:
        for line in [
            '{"message":"callback recorded","task_id":"t-1","scheme":"token"}',
            '{"message":"video stored","url":"https://cdn.example/v.mp4?<redacted>"}',
            "the token scheme rejected the request: token=missing",
            "AWS_SECRET_ACCESS_KEY=test",  # too short to be a secret worth matching
            "signature scheme upstream-hmac=mismatch",
        ]:
            self.assertEqual(self.kinds(line), [], line)

    def test_main_reports_file_and_line_and_fails(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            logs = Path(d) / "logs"
            logs.mkdir()
            (logs / "cargo-lambda.log").write_text("fine\nleaked tok-aaaaaaaaaaaa here\n")
            (logs / "moto.log").write_text("tok-aaaaaaaaaaaa (a stand-in's log: skipped)\n")
            env = Path(d) / "functions.env"
            env.write_text("".join(f"{k}={v}\n" for k, v in ENV.items()))
            absent = Path(d) / "no-secret.env"
            out = io.StringIO()
            with contextlib.redirect_stdout(out):  # a planted leak: keep it out of the test log
                self.assertEqual(ss.main(["--logs", str(logs), "--env", str(env), "--secret-env", str(absent)]), 1)
            self.assertIn("LEAK cargo-lambda.log:2: CALLBACK_TOKENS[0]", out.getvalue())
            self.assertNotIn("tok-aaaaaaaaaaaa", out.getvalue(), "the report never prints the secret")
            (logs / "cargo-lambda.log").write_text("fine\n")
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(ss.main(["--logs", str(logs), "--env", str(env), "--secret-env", str(absent)]), 0)
            # Values that live only in the configuration secret are looked for too.
            secret_env = Path(d) / "secret.env"
            secret_env.write_text("UPSTREAM_API_KEY=key-bbbbbbbbbbbb\n")
            (logs / "cargo-lambda.log").write_text("Bearer key-bbbbbbbbbbbb\n")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(ss.main(["--logs", str(logs), "--env", str(env), "--secret-env", str(secret_env)]), 1)
            self.assertIn("UPSTREAM_API_KEY[0]", out.getvalue())


if __name__ == "__main__":
    unittest.main()
