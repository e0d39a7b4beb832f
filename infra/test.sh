#!/usr/bin/env bash
# make test: unit tests, the local tooling's tests, then the integration and end-to-end
# suites against a local stack (started here and stopped on exit; a stack already running
# from `make run` is used as it is and left running).
# make test-faults (--faults): only the fault tests that take a server down, one at a time.
# make test-load (--load): 2 000 callbacks with duplicates through the local stack.
set -euo pipefail
cd "$(dirname "$0")/.."

bash infra/setup.sh

# Uses a running stack as it is, or starts one (with the given environment) for this run.
with_stack() {
    if ! python3 infra/local/stack.py status >/dev/null 2>&1; then
        trap 'python3 infra/local/stack.py stop' EXIT
        env "$@" python3 infra/local/stack.py start
    fi
    # The process-level suites run the binaries themselves: build them as they are now.
    cargo build --workspace --bins
}

case "${1:-}" in
    --load)
        with_stack
        echo "== load with duplicates (LOAD lines are the figures)"
        cargo test --workspace --test load -- --ignored --nocapture
        exit 0 ;;
    --faults)
        with_stack
        echo "== fault tests (servers taken down one at a time; RECOVERY lines are the figures)"
        cargo test --workspace --test faults -- --include-ignored --test-threads=1 --nocapture
        exit 0 ;;
esac

# Both cargo runs select the whole workspace, so they share one feature resolution and
# the SDKs compile once (a `-p` run would resolve features anew and rebuild them).
echo "== unit tests (the shared crate, the three functions, the test support)"
cargo test --workspace --lib --bins

echo "== local tooling tests (stream pump, template model, launcher)"
python3 -m unittest discover -s infra/local -p 'test_*.py'

echo "== template checks (least privilege per function: IAM lines are the figures)"
python3 -m unittest discover -s tests/template -p 'test_*.py'

if python3 infra/local/stack.py status >/dev/null 2>&1; then
    echo "== using the running local stack (its functions log at the level it was started with)"
else
    echo "== starting the local stack (functions at RUST_LOG=trace: the logs are scanned for secrets)"
fi
with_stack STACK_RUST_LOG=trace
echo "== integration and end-to-end tests (DynamoDB + S3 servers, functions under cargo lambda)"
cargo test --workspace --test '*'

echo "== secrets in logs: every suite's traffic went through the stack; no log may hold a secret"
python3 infra/local/secrets_scan.py
