# The README's two commands come first: `make run` (local stack) and `make test`.
.PHONY: run test test-faults test-load fuzz stop lint bench-ingest bench-receiver bench-answer bench-size build deploy

run: ## Local stack: DynamoDB + S3 servers, the functions under cargo lambda watch, the stream pump
	bash infra/setup.sh
	python3 infra/local/stack.py run

test: ## Unit, integration and end-to-end tests (starts and stops its own stack)
	bash infra/test.sh

test-faults: ## Fault tests that take a server down (DynamoDB paused, S3 restarted, spill and replay); run alone
	bash infra/test.sh --faults

test-load: ## Load with duplicates: 2 000 callbacks for 400 tasks, 32 concurrent, 1-20 MiB videos (minutes)
	bash infra/test.sh --load

fuzz: ## Fuzz the envelope parser, the three verifiers and the stream-image decoder (FUZZ_SECS each, default 60)
	bash infra/fuzz.sh

stop: ## Stop a stack started in the background (stack.py start)
	python3 infra/local/stack.py stop

lint: ## Format, clippy, unused dependencies and template checks, as CI runs them
	bash infra/setup.sh --lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo machete
	cfn-lint template.yaml

bench-ingest: ## Ingest throughput and memory vs curl and rclone (docs/benchmarks.md)
	bash infra/setup.sh
	python3 infra/bench/bench_ingest.py

bench-receiver: ## Envelope parse and each verification scheme (criterion), as ratios to same-run baselines
	python3 infra/bench/bench_receiver.py

bench-answer: ## Answer time (p50/p99, 10 MiB-1 GiB videos) of the receiver under the local stack vs a naive download-then-answer baseline
	bash infra/setup.sh
	python3 infra/bench/bench_answer.py

bench-size: ## Release arm64 binary sizes and process start -> ready for the first event
	bash infra/setup.sh
	python3 infra/bench/bench_size.py

build: ## Release binaries for Lambda (arm64), as sam build makes them
	rustup target add aarch64-unknown-linux-gnu
	cargo lambda build --release --arm64

deploy: ## Build and deploy with SAM (needs AWS credentials and SAM CLI)
	sam build && sam deploy --guided
