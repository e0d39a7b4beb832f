"""Quick tests of the stack launcher's pure parts (no servers started).

    python3 -m unittest discover -s infra/local -p 'test_*.py'
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402


class StackTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        for name, value in (("STACK_ENV", self.dir / "stack.env"), ("VIDEOS", self.dir / "videos"),
                            ("PIDS", self.dir / "pids")):
            patcher = mock.patch.object(stack, name, value)
            patcher.start()
            self.addCleanup(patcher.stop)

    def config(self, **env: str) -> stack.Config:
        with mock.patch.dict(os.environ, env):
            return stack.Config.from_env()

    def test_env_file_is_sourceable_and_round_trips(self) -> None:
        cfg = self.config(LAMBDA_PORT="9100", BUCKET_NAME="music-video-local")
        values = {**cfg.stack_env(), "ODD": "a b&c'd"}
        stack.write_env_file(stack.STACK_ENV, values)
        self.assertEqual(stack.read_env_file(stack.STACK_ENV), values)
        self.assertIn(f"CALLBACK_URL=http://127.0.0.1:9100/lambda-url/receiver/callbacks/music-video?token={cfg.token}\n",
                      stack.STACK_ENV.read_text())
        out = subprocess.run(["sh", "-c", f'. "{stack.STACK_ENV}"; printf %s "$ODD|$CALLBACK_URL"'],
                             capture_output=True, text=True, check=True).stdout
        self.assertEqual(out, f"a b&c'd|{values['CALLBACK_URL']}")

    def test_token_is_reused(self) -> None:
        first = self.config()
        self.assertGreaterEqual(len(first.token), 43)  # 32 random bytes, urlsafe base64
        stack.write_env_file(stack.STACK_ENV, first.stack_env())
        self.assertEqual(self.config().token, first.token)

    def test_functions_env(self) -> None:
        cfg = self.config(DYNAMODB_PORT="8100", STACK_EXTRA_ENV="MAX_ATTEMPTS=2 NOTE='x y'")
        with mock.patch.dict(os.environ, {"STACK_EXTRA_ENV": "MAX_ATTEMPTS=2 NOTE='x y'"}):
            env = cfg.functions_env()
        self.assertEqual(env["AWS_ENDPOINT_URL_DYNAMODB"], "http://127.0.0.1:8100")
        # Secrets come from the secret, never the functions' environment.
        self.assertNotIn("CALLBACK_TOKENS", env)
        self.assertEqual(env["SECRETS_ID"], cfg.secret_name)
        self.assertEqual(env["AWS_ENDPOINT_URL_SECRETS_MANAGER"], "http://127.0.0.1:8093")
        self.assertEqual(cfg.secret_vars()["CALLBACK_TOKENS"], cfg.token)
        # Endpoint signing secrets under the stack's own prefix, as the template's.
        self.assertEqual(env["ENDPOINT_SECRETS_PREFIX"], f"{cfg.table}/endpoints/")
        self.assertEqual(cfg.stack_env()["ENDPOINT_SECRETS_PREFIX"], env["ENDPOINT_SECRETS_PREFIX"])
        self.assertEqual((env["MAX_ATTEMPTS"], env["NOTE"]), ("2", "x y"))
        with mock.patch.dict(os.environ, {"STACK_EXTRA_ENV": "oops"}), self.assertRaises(stack.StackError):
            cfg.functions_env()

    def test_recovery_settings_and_the_simulated_upstream(self) -> None:
        cfg = self.config(UPSTREAM_PORT="8191")
        env = cfg.functions_env()
        self.assertEqual(env["UPSTREAM_API_BASE"], "http://127.0.0.1:8191/")
        self.assertEqual(cfg.secret_vars()["UPSTREAM_API_KEY"], cfg.upstream_key)
        self.assertNotIn("UPSTREAM_API_KEY", env)
        self.assertEqual(env["VIDEO_URL_ALLOWED_HOSTS"], "127.0.0.1")
        self.assertEqual(env["LEASE_SECS"], "15")
        event = stack.scheduled_event()
        self.assertEqual((event["source"], event["detail-type"]), ("aws.scheduler", "Scheduled Event"))
        stack.write_env_file(stack.STACK_ENV, cfg.stack_env())
        self.assertEqual(self.config().upstream_key, cfg.upstream_key, "kept across restarts")

    def test_sample_video_starts_with_ftyp(self) -> None:
        data = stack.write_sample_video().read_bytes()
        self.assertEqual(len(data), 3 * 1024 * 1024)
        self.assertEqual(data[:12], b"\x00\x00\x00\x18ftypisom")
        self.assertEqual(data[16:24], b"isomiso2")

    def test_taken_port_is_reported(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            cfg = self.config(FILES_PORT=str(port), DYNAMODB_PORT="101", S3_PORT="200", LAMBDA_PORT="300",
                              UPSTREAM_PORT="400")
            with mock.patch.object(stack, "port_in_use", side_effect=lambda p: p == port):
                with self.assertRaisesRegex(stack.StackError, f"FILES_PORT={port}"):
                    stack.check_ports(cfg)
            self.assertTrue(stack.port_in_use(port))
        with self.assertRaisesRegex(stack.StackError, "distinct"):
            stack.check_ports(self.config(S3_PORT="8333", LAMBDA_PORT="8334"))  # SeaweedFS master

    def test_a_server_that_never_gets_ready_is_reported_with_its_last_failure_and_log(self) -> None:
        logs = self.dir / "logs"
        with mock.patch.object(stack, "LOGS", logs):
            st = stack.Stack()
            child = st.spawn("sleeper", [sys.executable, "-c", "print('volume: no free volumes'); "
                                         "import time; time.sleep(30)"])
            self.addCleanup(child.proc.wait)
            self.addCleanup(child.proc.kill)

            def refuse() -> bool:
                raise ConnectionRefusedError("connection refused")

            with self.assertRaises(stack.StackError) as caught:
                st.wait_for("sleeper", refuse, 0.5, log_of="sleeper")
            log = str(child.log)
        message = str(caught.exception)
        self.assertIn("sleeper not ready after 0s", message)
        self.assertIn("last failure: ConnectionRefusedError: connection refused", message)
        self.assertIn("volume: no free volumes", message)
        self.assertIn(log, message)

    def test_seaweedfs_refuses_to_start_on_a_nearly_full_disk(self) -> None:
        full = mock.Mock(free=200 << 20)
        with mock.patch.object(stack.shutil, "disk_usage", return_value=full), \
                mock.patch.object(stack.Stack, "spawn") as spawn:
            with self.assertRaisesRegex(stack.StackError, "only 200 MiB free"):
                stack.start_seaweedfs(stack.Stack(), self.config(), data=self.dir / "weed")
        spawn.assert_not_called()


if __name__ == "__main__":
    unittest.main()
