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
# Reproducible: the base images are pinned by digest (the tag beside it is for people; with a
# digest, the tag is not looked up), and every Python package comes from a lock file with the
# sha256 of each of its files, installed with --require-hashes: requirements.lock for the
# runtime, requirements-build.lock for the tools that build the wheel (setuptools, mypyc), which
# live in a virtual environment of their own and never reach the final image. `make lock`
# (scripts/lock.sh) regenerates both from pyproject.toml.
#
#   docker build -t cdr-connector .
#   docker run --rm cdr-connector --help

# The digests are those of the official images' multi-platform indexes, as the Docker Official
# Images' public record (github.com/docker-library/repo-info, repos/python/remote/<tag>.md) lists
# them. To move to a newer build of the same tag, take its current digest from there.
# python:3.12-slim-bookworm (Python 3.12.13)
ARG PYTHON_IMAGE=python:3.12-slim-bookworm@sha256:4766d8b510c428e595d74b9cc5bbb2fae8e26316fffb4adc89908d79aacd58a2
# python:3.12-bookworm (Python 3.12.13)
ARG BUILD_IMAGE=python:3.12-bookworm@sha256:42bff25cb817c9c2e32198253c3736508371433e76be3c61700c75c1e0fab2fe

FROM ${BUILD_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/build-tools \
    && /opt/build-tools/bin/pip install --require-hashes --no-deps -r requirements-build.lock \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps --no-compile -r requirements.lock
COPY pyproject.toml setup.py README.md ./
COPY cdr_connector ./cdr_connector
# The project's own wheel is built with the locked tools (no build isolation, which would fetch
# unpinned ones) and installed without dependencies: they all came from the lock above.
RUN /opt/build-tools/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /tmp/wheels ./ \
    && /opt/venv/bin/pip install --no-deps --no-index --no-compile /tmp/wheels/cdr_connector-*.whl \
    && /opt/venv/bin/pip check \
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
