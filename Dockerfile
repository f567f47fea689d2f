# The flowreg operator image. Build: docker build -t flowreg:0.1.0 .
# Stage 1 builds a wheel; the final stage installs it with no build tools and runs as non-root.
FROM python:3.12-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY crds/ crds/
RUN python -m build --wheel --outdir /wheels

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/flowreg-*.whl)[operator]" \
    && rm -rf /wheels \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin flowreg
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["flowreg"]
CMD ["run", "--config", "/etc/flowreg/config.yaml", "--all-namespaces"]
