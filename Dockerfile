# bpserve: the model server.  Build: docker build -t bpserve .
# Run:   docker run -p 8000:8000 -e BPSERVE_TRAIN_TOKEN=... -v bpserve-models:/models bpserve

# ---- build: a wheel from the project's own metadata ----
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY training/ training/
COPY service/ service/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# ---- runtime: the wheel and its runtime dependencies, nothing else ----
FROM python:3.11.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    BPSERVE_BIND=0.0.0.0:8000 \
    BPSERVE_MODELS_DIR=/models \
    BPSERVE_GRACEFUL_TIMEOUT=20
RUN groupadd --system --gid 10001 bpserve \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin bpserve
COPY --from=build /dist/ /tmp/dist/
# The wheel's own Requires-Dist decides what is installed: no test or build tools.
RUN python -m pip install --no-cache-dir --root-user-action=ignore /tmp/dist/*.whl && rm -rf /tmp/dist
WORKDIR /app
COPY gunicorn.conf.py ./
# The default model; a named volume mounted here starts as a copy of it.
COPY --chown=10001:10001 models/ /models/
VOLUME ["/models"]
USER 10001:10001
EXPOSE 8000
# gunicorn: SIGTERM is the graceful stop (finish in-flight requests within
# BPSERVE_GRACEFUL_TIMEOUT = 20 s); give the runtime more than that (docker stop -t 30).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["gunicorn", "--config", "python:service.gunicorn_conf"]
