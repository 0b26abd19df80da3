# The Session Memory server. Build: docker build -t session-memory .
#
# Two stages on one slim base: "build" makes a virtualenv from the hash-locked
# dependencies (deploy/requirements.lock, `make lock`) plus the project's two wheels
# (session-memory-client, which holds the generated stubs, and the server, which pins
# it); the image gets that virtualenv alone (no compilers, caches or sources), runs as
# uid 10001 and checks its own readiness.
#
# The base is pinned to its full version tag. Add its digest as well
# (python:3.11.17-slim-trixie@sha256:...) where your registry can be asked for it: it
# could not be looked up where this file was written, and a wrong digest fails every build.
ARG PYTHON_IMAGE=python:3.11.17-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# Dependencies first, so this layer is rebuilt only when a lock changes. Only wheels
# (nothing compiles) and only the files whose hashes the locks name.
COPY deploy/requirements.lock deploy/build-requirements.lock /locks/
RUN python -m venv /opt/session-memory \
 && /opt/session-memory/bin/pip install --require-hashes --only-binary=:all: --no-deps \
      -r /locks/requirements.lock \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --only-binary=:all: --no-deps \
      -r /locks/build-requirements.lock
WORKDIR /src
COPY clients/python/pyproject.toml clients/python/README.md clients/python/LICENSE clients/python/
COPY clients/python/src clients/python/src
COPY pyproject.toml README.md LICENSE ./
COPY server/src server/src
# Both distributions, built offline with the locked setuptools and installed without
# dependencies (the client is not on the lock: it is built here, from the same tree as
# the server, so the server's exact pin on it holds); pip check fails the build if the
# lock misses a dependency or the two versions disagree.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels \
      ./clients/python . \
 && /opt/session-memory/bin/pip install --no-deps --no-index \
      /wheels/session_memory_client-*.whl /wheels/session_memory-*.whl \
 && /opt/session-memory/bin/pip check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="session-memory" \
      org.opencontainers.image.description="Typed, expiring, per-conversation memory over gRPC" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric user: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 memory \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin memory
COPY --from=build /opt/session-memory /opt/session-memory
# Bytecode was compiled at install time: nothing is written next to the code, so the
# root filesystem can be read-only (uploads spool to /tmp).
ENV PATH=/opt/session-memory/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SESSION_MEMORY_LISTEN=0.0.0.0:50051 \
    SESSION_MEMORY_HEALTH_LISTEN=127.0.0.1:8081
USER 10001:10001
# gRPC; Prometheus (SESSION_MEMORY_METRICS_LISTEN=0.0.0.0:9464); the plaintext probe
# port serving only grpc.health.v1 (SESSION_MEMORY_HEALTH_LISTEN=0.0.0.0:8081 to reach it).
EXPOSE 50051 9464 8081
# Readiness of sessionmemory.v1.MemoryService (Redis and the bucket answer), asked on
# the plaintext probe port (127.0.0.1:8081 by default, so the check keeps working with
# TLS or mTLS on the gRPC port; 0.0.0.0:8081 for Kubernetes' probes); no API key needed. Every 2 s
# while starting, then every 30 s (a check costs ~0.4 s of CPU: a Python start).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --start-interval=2s --retries=3 \
  CMD ["session-memory", "health"]
# SIGTERM: readiness turns NOT_SERVING, new calls are refused and calls in flight get
# SESSION_MEMORY_GRACE_SECONDS (10) to finish; give the container more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["session-memory", "serve"]
