# syntax=docker/dockerfile:1
#
# One image for both services (and the certs-tooling CLI):
#   /opt/venv/bin/agent-bootstrap-webhook    the admission webhook  (the chart sets `command`)
#   /opt/venv/bin/agent-bootstrap-approver   the approver
#   /opt/venv/bin/certs-tooling              keys and certificates, e.g. in a Job
#   /opt/venv/bin/agent-bootstrap-agent-proxy  the agent proxy sidecar (agent client certificates)
#
# Build: make image (passes VERSION, REVISION and SOURCE_URL, see below), or
#        docker build -t agent-bootstrap:0.1.0 .
#
# Stage 1 installs the dependencies exactly as requirements.lock pins them (every file checked
# against its sha256, nothing resolved at build time; `make lock` regenerates it from
# pyproject.toml), builds the project's wheel with the tools pinned in requirements-build.lock,
# and installs it into a virtualenv on Debian 12's own Python 3.11. Stage 2 copies only that
# virtualenv onto distroless Python (Debian 12, the same /usr/bin/python3.11 the virtualenv
# points at): no shell, no package manager, no compiler at runtime, and a numeric non-root
# user, so the pod's `runAsNonRoot: true` can be verified by the kubelet. Pin both images by
# digest in production (`--build-arg BUILD_IMAGE=debian:12-slim@sha256:...`); then two builds
# of one commit install the same files.
#
# OCI labels (docker inspect): org.opencontainers.image.version is VERSION, which must equal
# pyproject.toml's version (the build fails otherwise; tests/release checks the default below);
# .revision is the commit (REVISION) and .source the repository's URL (SOURCE_URL), empty
# unless given.

ARG BUILD_IMAGE=debian:12-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot
ARG VERSION=0.1.0

FROM ${BUILD_IMAGE} AS build
ARG VERSION
RUN apt-get update \
 && apt-get install --yes --no-install-recommends --no-install-suggests python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# The runtime virtualenv, and a separate one holding what builds the wheel. Both keep the pip
# Debian ships with the base image (not upgraded from the network).
RUN python3 -m venv /opt/venv \
 && python3 -m venv /opt/build
WORKDIR /src

# Dependencies first, from the lock files alone: this layer is reused while only code changes.
# --require-hashes: exact versions, each file checked; --no-deps: nothing the lock does not
# name; --only-binary: no source build (whose own build tools would not be pinned).
COPY requirements.lock requirements-build.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps --only-binary :all: -r requirements.lock \
 && /opt/build/bin/pip install --require-hashes --no-deps --only-binary :all: \
      -r requirements-build.lock

# Then the project itself, as a wheel (package data such as the Alembic migrations and LICENSE
# included), built with the pinned setuptools and installed without dependencies; `pip check`
# fails the build if the lock missed one.
COPY pyproject.toml README.md LICENSE ./
COPY bootstrap_token ./bootstrap_token
COPY webhook ./webhook
COPY approver ./approver
COPY certs_tooling ./certs_tooling
COPY agent_proxy ./agent_proxy
RUN /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-deps /tmp/wheels/*.whl \
 && /opt/venv/bin/pip check \
 && { test "$(/opt/venv/bin/agent-bootstrap-webhook --version)" = "agent-bootstrap-webhook ${VERSION}" \
      || { echo "VERSION=${VERSION} is not pyproject.toml's version" >&2; exit 1; }; } \
 && /opt/venv/bin/agent-bootstrap-webhook --help >/dev/null \
 && /opt/venv/bin/agent-bootstrap-approver --version >/dev/null \
 && /opt/venv/bin/agent-bootstrap-approver --help >/dev/null \
 && /opt/venv/bin/certs-tooling --version >/dev/null \
 && /opt/venv/bin/certs-tooling --help >/dev/null \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${RUNTIME_IMAGE}
ARG VERSION
ARG REVISION=""
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="agent-bootstrap" \
      org.opencontainers.image.description="Admission-stamped bootstrap tokens: the webhook, the approver and certs-tooling." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/bin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# distroless "nonroot": 65532:65532. Numeric, so Kubernetes can check runAsNonRoot.
USER 65532:65532
# webhook HTTPS, approver, webhook metrics
EXPOSE 8443 8444 9090
ENTRYPOINT ["/opt/venv/bin/agent-bootstrap-webhook"]
