# The flowreg operator image.
#   docker build -t flowreg:0.1.0 .                       (base: python:3.12-slim)
#   podman build --build-arg BASE_IMAGE=my/python:3.11 .  (any Debian-like base with python3 -m venv)
# Everything installed comes from the locks in hack/image/ (exact versions, hashes checked,
# wheels only), so a rebuild installs the same bytes. The final stage is FROM scratch: the
# interpreter, its standard library, one virtualenv and the shared libraries they load, copied
# out of the base by hack/image/rootfs.py. No shell, no package manager, no pip, no compiler;
# it runs as UID 10001 on a read-only root.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
# Set only where the package index is reached through a private CA (a bundle mounted into the build).
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ONLY_BINARY=:all:
WORKDIR /src
COPY hack/image/requirements.txt hack/image/build-requirements.txt ./
RUN python3 -m venv /opt/backend \
    && /opt/backend/bin/pip install --require-hashes -r build-requirements.txt \
    && python3 -m venv /opt/flowreg \
    && /opt/flowreg/bin/pip install --require-hashes -r requirements.txt
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY crds/ crds/
RUN /opt/backend/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/flowreg/bin/pip install --no-deps /wheels/flowreg-*.whl \
    && /opt/flowreg/bin/pip uninstall --yes pip setuptools \
    && find /opt/flowreg -depth -type d -name tests -path '*/site-packages/numpy/*' -exec rm -rf {} + \
    && /opt/flowreg/bin/flowreg --version \
    && /opt/flowreg/bin/python -c "import qdrant_client, qdrant_edge, kopf, flowreg.controller.handlers"
COPY hack/image/rootfs.py ./
RUN python3 rootfs.py /rootfs /opt/flowreg

FROM scratch
COPY --from=build /rootfs /
ENV PATH=/opt/flowreg/bin \
    HOME=/tmp \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["flowreg"]
CMD ["run", "--config", "/etc/flowreg/config.yaml", "--all-namespaces"]
