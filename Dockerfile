# syntax=docker/dockerfile:1
#
# One image for both services (and the certs-tooling CLI):
#   /opt/venv/bin/agent-bootstrap-webhook    the admission webhook  (the chart sets `command`)
#   /opt/venv/bin/agent-bootstrap-approver   the approver
#   /opt/venv/bin/certs-tooling              keys and certificates, e.g. in a Job
#
# Build: docker build -t agent-bootstrap:0.1.0 .
#
# Stage 1 builds the project's wheel and installs it with its dependencies into a virtualenv on
# Debian 12's own Python 3.11. Stage 2 copies only that virtualenv onto distroless Python
# (Debian 12, the same /usr/bin/python3.11 the virtualenv points at): no shell, no package
# manager, no compiler at runtime, and a numeric non-root user, so the pod's
# `runAsNonRoot: true` can be verified by the kubelet. Pin both images by digest in production
# (`--build-arg BUILD_IMAGE=debian:12-slim@sha256:...`).

ARG BUILD_IMAGE=debian:12-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
RUN apt-get update \
 && apt-get install --yes --no-install-recommends --no-install-suggests python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip
WORKDIR /src

# Dependencies first, from pyproject.toml alone: this layer is reused while only code changes.
COPY pyproject.toml ./
RUN /opt/venv/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt

# Then the project itself, as a wheel (package data such as the Alembic migrations included).
COPY README.md ./
COPY bootstrap_token ./bootstrap_token
COPY webhook ./webhook
COPY approver ./approver
COPY certs_tooling ./certs_tooling
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-deps /tmp/wheels/*.whl \
 && /opt/venv/bin/agent-bootstrap-webhook --help >/dev/null \
 && /opt/venv/bin/agent-bootstrap-approver --help >/dev/null \
 && /opt/venv/bin/certs-tooling --help >/dev/null \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${RUNTIME_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/bin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# distroless "nonroot": 65532:65532. Numeric, so Kubernetes can check runAsNonRoot.
USER 65532:65532
# webhook HTTPS, approver, webhook metrics
EXPOSE 8443 8444 9090
ENTRYPOINT ["/opt/venv/bin/agent-bootstrap-webhook"]
