# vecroute: the API (default command) or the worker (`vecroute worker`), CPU only.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from PyTorch's CPU-only index: the project pins torch==2.13.0, which the
# installed 2.13.0+cpu satisfies, so installing the project next never pulls a CUDA build
# (PyPI's Linux torch wheels bundle CUDA: several GB). Its own layer, cached across builds.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /opt/vecroute
COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY migrations ./migrations
COPY app ./app
COPY worker ./worker
# Editable: migrations are found next to the app package (app/store/migrate.py). EXTRAS:
# optional parts of pyproject.toml, e.g. `cluster` (Ray) for the compose profile `cluster`.
ARG EXTRAS=""
RUN pip install -c constraints.txt -e ."${EXTRAS:+[$EXTRAS]}" \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/vecroute vecroute

# Snapshots of the indexes live here (derived state: the store is the source of truth).
ENV VECROUTE_DATA_DIR=/var/lib/vecroute
USER vecroute
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["vecroute", "serve", "--host", "0.0.0.0", "--port", "8000"]
