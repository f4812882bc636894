# syntax=docker/dockerfile:1
# Two images from one build. Seldon's agent downloads each Model's artifacts from its storageUri; the images carry
# only code. Not built here: the development machine has no container engine.
#
#   docker build --target serving -t ghcr.io/seldon-market-ab/mlserver:0.1.0 .  # the Server (manifests/base/server.yaml)
#   docker build --target tools -t ghcr.io/seldon-market-ab/tools:0.1.0 .       # the rollout and retraining Jobs and
#                                                                                # the alert receiver (market-ab)
#
# Python 3.11, as setup.cfg's python_requires says: the official seldonio/mlserver 1.7.1 images run Python 3.10, so
# the serving image installs MLServer itself, as this package's dependency, on python:3.11-slim.

# The wheel: every folder setup.cfg maps under seldon_market_ab.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY seldon_market_ab seldon_market_ab
COPY runtimes runtimes
COPY routers routers
COPY detectors detectors
COPY training training
COPY local_seldon local_seldon
COPY analysis analysis
COPY rollouts rollouts
COPY retraining retraining
COPY loadtest loadtest
COPY cli cli
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# The serving install: MLServer with the runtimes, the routers on SQLite or Redis and the drift detector; no
# training, plotting, market-data or load-testing library. torch's CPU build (PyPI's default is a CUDA one).
FROM python:3.11-slim AS serving
RUN useradd --uid 1000 --create-home mlserver
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        "$(ls /wheels/seldon_market_ab-*.whl)[drift,redis]"
USER 1000
WORKDIR /home/mlserver
# Seldon's ServerConfig sets the ports, MLSERVER_MODELS_DIR (/mnt/agent/models) and MLSERVER_LOAD_MODELS_AT_STARTUP;
# it gives the container no command, so the image's own starts MLServer, as the official image's does.
ENV MLSERVER_MODELS_DIR=/mnt/models
CMD ["sh", "-c", "exec mlserver start \"$MLSERVER_MODELS_DIR\""]

# The tools on top: the market-ab command with what its subcommands use, and the Kubernetes client.
FROM serving AS tools
USER root
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        "$(ls /wheels/seldon_market_ab-*.whl)[tools,redis,kubernetes]"
USER 1000
