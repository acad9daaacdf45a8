# The web app as a CPU container: gunicorn (deploy/gunicorn.conf.py, one worker) on port 8000,
# as an unprivileged user, with the shipped weights.
#   docker build -t ser-webapp .
#   docker run --rm -p 127.0.0.1:8000:8000 ser-webapp         # http://127.0.0.1:8000/
# Several replicas behind nginx with TLS and Redis: deploy/compose.yaml (docs/deploy.md).
# Settings are SER_* environment variables (webapp/config.py), e.g. -e SER_INFERENCE_WORKERS=2.

# The page's libraries (socket.io-client, Chart.js, ...) come from npm, served by the app itself.
FROM node:20-bookworm-slim AS vendor
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# ffmpeg decodes webm/ogg/m4a uploads (webapp/routes.py -> ser_model/audio.py)
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
# torch first, from the CPU wheel index: from PyPI it would pull gigabytes of CUDA libraries.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /app
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/ser ser
COPY --from=vendor /src/node_modules ./node_modules
COPY pyproject.toml README.md wsgi.py run.py ./
COPY ser_model ./ser_model
COPY webapp ./webapp
COPY templates ./templates
COPY static ./static
COPY weights ./weights
COPY deploy/gunicorn.conf.py ./deploy/
# The project and its dependencies (pyproject.toml), editable so it finds templates/, static/, weights/ here.
RUN pip install -e .
# The code is root's and read-only to the app; it writes nothing but its control socket at home.
USER ser
ENV SER_BIND=0.0.0.0:8000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
