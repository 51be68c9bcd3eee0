# syntax=docker/dockerfile:1
# dispatcher serve in a container: `docker build -t dispatcher .` (docs/deploy.md).
# The dependencies are the locked ones (uv.lock), installed with the pinned uv the
# scripts use; the image runs as an unprivileged user with its home folder a volume.

FROM python:3.11-slim-bookworm AS build
ENV UV_VERSION=0.13.9 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/dispatcher \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# The locked dependencies first: this layer changes only with uv.lock.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY dispatcher ./dispatcher
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 dispatcher \
    && useradd --system --uid 10001 --gid dispatcher --no-create-home \
        --home-dir /var/lib/dispatcher --shell /usr/sbin/nologin dispatcher \
    && install -d -m 0700 -o dispatcher -g dispatcher /var/lib/dispatcher
COPY --from=build /opt/dispatcher /opt/dispatcher
ENV PATH=/opt/dispatcher/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DISPATCHER_HOME=/var/lib/dispatcher \
    DISPATCHER_HTTP_LISTEN=0.0.0.0:8080 \
    DISPATCHER_LOG_FORMAT=json
USER dispatcher
WORKDIR /var/lib/dispatcher
VOLUME ["/var/lib/dispatcher"]
EXPOSE 8080
# Liveness: the process answers HTTP (readiness, /readyz, is for the load balancer).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["dispatcher"]
CMD ["serve"]
