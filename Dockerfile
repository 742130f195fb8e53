# One image for every process of the platform; its first argument selects which one:
#   router | cell | worker | beat | migrate | ledgerctl [args...]   (anything else is run as given)
# Build:  docker build -t ledger:0.1.0 .
# Run:    docker run --rm -e ROUTER_CONTROL_PLANE_DATABASE_URL=... ledger:0.1.0 router

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# ---- build: a virtualenv with the project and its runtime dependencies, versions from requirements.lock ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/ledger
WORKDIR /src
# The lock pins the development tools too: used as constraints, it fixes the version of every runtime
# dependency of pyproject.toml without installing the test tools (pytest, helm-python-sdk, ...).
COPY requirements.lock pyproject.toml ./
COPY cell ./cell
COPY router ./router
COPY worker ./worker
COPY control_plane ./control_plane
COPY ledger_common ./ledger_common
RUN /opt/ledger/bin/pip install --constraint requirements.lock . \
    && /opt/ledger/bin/python -m compileall -q /opt/ledger/lib
# The entrypoint: one word picks the process; settings come from the environment (CELL_*, WORKER_*,
# ROUTER_*, CONTROL_PLANE_*, LEDGER_*). `migrate` takes the cell's database URL from CELL_DATABASE_URL
# when no argument is given, so the URL never needs to be on a command line written in a manifest.
# hadolint ignore=SC2016
RUN printf '%s\n' \
        '#!/bin/sh' \
        'set -eu' \
        'command="${1:-help}"' \
        '[ "$#" -gt 0 ] && shift' \
        'case "$command" in' \
        '  router) exec python -m router "$@" ;;' \
        '  cell) exec python -m cell "$@" ;;' \
        '  worker) export WORKER_BEAT=false; exec python -m worker "$@" ;;' \
        '  beat) export WORKER_BEAT=true; exec python -m worker "$@" ;;' \
        '  migrate) exec python -m cell.store.migrate "${1:-${CELL_DATABASE_URL:?CELL_DATABASE_URL or an argument is required}}" ;;' \
        '  ledgerctl) exec ledgerctl "$@" ;;' \
        '  help|-h|--help) echo "usage: ledger router|cell|worker|beat|migrate [URL]|ledgerctl ARGS...|COMMAND ARGS..." ;;' \
        '  *) exec "$command" "$@" ;;' \
        'esac' \
        > /opt/ledger/bin/ledger \
    && chmod 0755 /opt/ledger/bin/ledger

# ---- runtime: the slim base, the virtualenv, a non-root user; no compiler, no pip cache, no sources ----
FROM ${PYTHON_IMAGE}
ARG LEDGER_UID=10001
ENV PATH=/opt/ledger/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid "${LEDGER_UID}" ledger \
    && useradd --system --uid "${LEDGER_UID}" --gid ledger --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ledger
COPY --from=build /opt/ledger /opt/ledger
WORKDIR /tmp
USER 10001:10001
# API and router listen on 8080, their Prometheus metrics on 9090 (set by the Helm chart through env).
EXPOSE 8080 9090
ENTRYPOINT ["ledger"]
CMD ["help"]
