# cdr-connector's container image.
#
# Two stages: `build` installs the project and its dependencies into a virtual environment (every
# dependency ships a manylinux wheel: confluent-kafka with librdkafka, fastavro, orjson; the
# project's own bill writer is compiled with mypyc, see setup.py, which is why this stage uses the
# full Python image, with gcc), and the final stage copies only that environment onto the slim
# image of the same Python. No compiler, pip cache or source tree reaches the final image. It
# runs as an unprivileged numeric user, so Kubernetes' runAsNonRoot can verify it, and works with
# a read-only root filesystem (/tmp is the only place it writes, and Python writes no bytecode at
# run time). There is no HEALTHCHECK: Kubernetes probes /livez and /readyz (see
# deploy/helm/cdr-connector).
#
#   docker build -t cdr-connector .
#   docker run --rm cdr-connector --help

ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG BUILD_IMAGE=python:3.12-bookworm

FROM ${BUILD_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY cdr_connector ./cdr_connector
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile ./ \
    && /opt/venv/bin/python -I -c "import cdr_connector.bill_writer as w, cdr_connector.batch_writer as b; assert w.is_compiled() and b.is_compiled()" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cdr-connector" \
      org.opencontainers.image.description="Streams call detail records from a telephony vendor's HTTP API into Apache Kafka, exactly once, as Avro." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 cdr \
    && useradd --system --uid 10001 --gid cdr --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cdr
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 9464
ENTRYPOINT ["cdr-connector"]
CMD ["run"]
