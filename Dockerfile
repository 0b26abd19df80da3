# The Session Memory server. Build: docker build -t session-memory .
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY clients/python ./clients/python
RUN pip install --no-cache-dir . && useradd --system --uid 10001 memory
USER memory
ENV SESSION_MEMORY_LISTEN=0.0.0.0:50051
EXPOSE 50051
STOPSIGNAL SIGTERM
ENTRYPOINT ["session-memory", "serve"]
