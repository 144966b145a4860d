# runwatch exporter image. Build: docker build -t runwatch .
# Default: replay the demo runs on 0.0.0.0:9897. To watch real runs mount a
# config and run e.g. `serve -c /etc/runwatch/runwatch.yaml --listen 0.0.0.0:9897`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RUNWATCH_DATA_DIR=/var/lib/runwatch

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin runwatch \
    && install -d -o 10001 -g 10001 /var/lib/runwatch /home/runwatch \
    && rm -rf /src

WORKDIR /home/runwatch
USER 10001:10001

EXPOSE 9897
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9897/healthz', timeout=2)"]

ENTRYPOINT ["runwatch"]
CMD ["demo", "--listen", "0.0.0.0:9897"]
