# One image for every process of the project (scorer, API, producer, one-shot jobs).
# The handbook data is not baked in: mount it at /data (FRAUD_DATA_DIR). The tools (tools/,
# load_tests/: benchmarks, fault scenarios, the demo) are not copied; `fraud` lists none of them.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FRAUD_VAR_DIR=/var/lib/fraud FRAUD_DATA_DIR=/data
RUN useradd --create-home --uid 10001 fraud \
 && mkdir -p /var/lib/fraud /data && chown fraud /var/lib/fraud
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY services services
COPY models models
COPY feature_store feature_store
COPY infra infra
RUN pip install --no-cache-dir -e . \
 && python -c "import services.cli, models.train; services.cli.build_parser()"
USER fraud
# API, scorer /metrics, producer /metrics, recorder /metrics. No health check in the image: each
# process answers on its own port (docker-compose.yml gives each service its own check).
EXPOSE 8000 8001 8002 8003
ENTRYPOINT ["fraud"]
CMD ["--help"]
