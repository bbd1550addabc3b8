# One image for every Quire role (workers, API, watcher); the command picks the role.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends poppler-utils jbig2dec fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# CPU torch by default; build with --build-arg TORCH_SPEC=torch for the CUDA wheels on GPU nodes.
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
RUN pip install --no-cache-dir "${TORCH_SPEC}" --extra-index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md alembic.ini ./
COPY pipeline pipeline
COPY workers workers
COPY migrations migrations
COPY models models
RUN pip install --no-cache-dir -e ".[postgres]"
# Compile the CTC beam search (numba) into the image, so no worker pays it at its first batch.
RUN python -c "import torch; from pipeline.ctc_beam import ctc_readings; ctc_readings(torch.zeros(1, 2, 3), 0)"
ENV QUIRE_HOME=/data PYTHONUNBUFFERED=1
# The API's port and the workers' Prometheus port (`quire worker --metrics-port 9100`).
EXPOSE 8000 9100
# Health checks are per role, in docker-compose.yml (API: /healthz; workers: a broker ping).
ENTRYPOINT ["quire"]
CMD ["--help"]
