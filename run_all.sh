#!/usr/bin/env bash
# Reproduce everything: set up (or check) the environment, prepare the data, run every stage notebook for
# every variant (cached, resumable), build the report (report/<profile>/{id,en}/index.html and report.pdf),
# and, when results/<profile>/ is committed, check the run against it (python -m trashnet verify).
#
#   ./run_all.sh                                  # bundled sample, quick profile: a smoke run
#   ./run_all.sh --data ~/trashnet/dataset-resized --profile cpu -j 2
#
# Options (everything after the environment step is `python -m trashnet run`):
#   --profile NAME   experiments/profiles/NAME.yaml (default: quick on the sample, cpu on --data)
#   --data DIR       a <class>/<image> folder (default: $TRASHNET_DATA, else the bundled sample)
#   --out DIR        output root for dataset/ models/ report/ logs/, each with a <profile>/ folder
#                    (default: $TRASHNET_OUT, else here)
#   --variants P,..  variant ids or shell patterns from experiments/variants.yaml (sources come along)
#   --split S        official or stratified (default: the profile's; official needs the complete TrashNet,
#                    so another data folder gets the stratified split unless --split official is given)
#   -j N             variants in parallel, threads split between them (default 1; on 2 cores use -j 2:
#                    two 1-thread workers train 1.2x faster than one 2-thread process, docs/toolchain-facts.md)
#   --force          rerun every selected variant, ignoring the cache
#   --setup-only     stop after the environment step
#   --no-report      skip the report
#   --no-verify      skip the comparison with results/<profile>/
#   --no-warmup      start a long run without the machine check (a few timed training steps and a
#                    one-line estimate of the whole run for this machine; short runs skip it anyway)
#   --debug          show the traceback of an error
#
# Environment: TRASHNET_PYTHON (an existing interpreter to use instead of ./.venv/bin/python; only checked),
# TRASHNET_METADATA_PYTHON (the same for the TFLite metadata writer's tool venv, ./.venv-metadata),
# TRASHNET_MEDIAPIPE_PYTHON (the same for MediaPipe's tool venv, ./.venv-mediapipe: the final stage's
# preprocessing parity runs MediaPipe and OpenCV there; "none": no such venv, the parity block then names
# them as not measured), TRASHNET_DATA, TRASHNET_OUT.
#
# Needs: Python 3.11 and a package index (pip installs the locks exactly, docs/install.md); for the PDF
# report, the Pango library (present on Debian/Ubuntu and in python:3.11 images; checked first).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$REPO/.venv"
LOCK="$REPO/requirements.lock"
STAMP="$VENV/.requirements.lock.sha256"
# The TFLite metadata writer (tflite-support, protobuf 3) cannot share the lock: its own tool venv.
META_VENV="$REPO/.venv-metadata"
META_LOCK="$REPO/requirements-metadata.lock"
META_STAMP="$META_VENV/.requirements-metadata.lock.sha256"
# MediaPipe Tasks and OpenCV (the apps' resizers the final stage measures parity with): their own tool venv too.
MP_VENV="$REPO/.venv-mediapipe"
MP_LOCK="$REPO/requirements-mediapipe.lock"
MP_STAMP="$MP_VENV/.requirements-mediapipe.lock.sha256"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "run_all.sh: $*" >&2; exit 2; }
absolute() { # a path as given on the command line, made absolute against the caller's directory
  case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac
}

setup_only=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --setup-only) setup_only=1 ;;
    --force|--no-report|--no-verify|--no-warmup|--debug) args+=("$1") ;;
    --profile|--variants|--split|-j|--jobs)
      [ $# -ge 2 ] || die "$1 needs a value"
      args+=("$1" "$2"); shift ;;
    --data|--out)
      [ $# -ge 2 ] || die "$1 needs a value"
      args+=("$1" "$(absolute "$2")"); shift ;;
    --profile=*|--variants=*|--split=*|--jobs=*) args+=("$1") ;;
    --data=*|--out=*) args+=("${1%%=*}" "$(absolute "${1#*=}")") ;;
    -j[0-9]*) args+=("-j" "${1#-j}") ;;
    *) die "unknown option $1 (see ./run_all.sh --help)" ;;
  esac
  shift
done

# The one system library the main job needs from outside the lock: Pango, which WeasyPrint draws the PDF
# report with (Debian/Ubuntu desktops and the python:3.11 images have it). Said before anything is downloaded.
no_report=0
for arg in ${args[@]+"${args[@]}"}; do [ "$arg" = --no-report ] && no_report=1; done
if [ "$no_report" = 0 ] && ! { /sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null; } | grep -q 'libpango-1.0.so.0'; then
  die "the PDF report needs the Pango library, which this machine lacks - install it (Debian/Ubuntu: apt-get install libpango-1.0-0 libpangoft2-1.0-0) or pass --no-report"
fi

lock_hash() { sha256sum "$LOCK" | cut -d' ' -f1; }

install_into_venv() {
  echo "setup: installing requirements.lock into $VENV (hash-checked, exactly as locked)"
  "$REPO/docker/install-lock.sh" "$VENV/bin/python" "$LOCK"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$REPO"
  lock_hash > "$STAMP"
}

if [ -n "${TRASHNET_PYTHON:-}" ]; then
  PY="$TRASHNET_PYTHON"
  command -v "$PY" >/dev/null 2>&1 || die "TRASHNET_PYTHON=$PY is not an executable"
else
  PY="$VENV/bin/python"
  if [ ! -x "$PY" ]; then
    command -v python3.11 >/dev/null 2>&1 || die "python3.11 is needed to create $VENV"
    echo "setup: creating $VENV with $(command -v python3.11)"
    python3.11 -m venv "$VENV"
    install_into_venv
  elif [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$(lock_hash)" ]; then
    echo "setup: requirements.lock changed since $VENV was installed"
    install_into_venv
  fi
fi

# A tool's own venv (it cannot share the main lock): the interpreter its variable names, or <venv> installed
# from <lock> and re-installed when the lock changes.
tool_venv() {  # <variable name> <venv> <lock> <stamp>
  local given="${!1:-}" venv="$2" lock="$3" stamp="$4"
  if [ -n "$given" ]; then
    command -v "$given" >/dev/null 2>&1 || die "$1=$given is not an executable"
  elif [ ! -x "$venv/bin/python" ] || [ ! -f "$stamp" ] \
      || [ "$(cat "$stamp")" != "$(sha256sum "$lock" | cut -d' ' -f1)" ]; then
    command -v python3.11 >/dev/null 2>&1 || die "python3.11 is needed to create $venv"
    echo "setup: installing $(basename "$lock") into $venv (hash-checked)"
    [ -x "$venv/bin/python" ] || python3.11 -m venv "$venv"
    "$REPO/docker/install-lock.sh" "$venv/bin/python" "$lock"
    sha256sum "$lock" | cut -d' ' -f1 > "$stamp"
  fi
}
tool_venv TRASHNET_METADATA_PYTHON "$META_VENV" "$META_LOCK" "$META_STAMP"
[ "${TRASHNET_MEDIAPIPE_PYTHON:-}" = none ] || tool_venv TRASHNET_MEDIAPIPE_PYTHON "$MP_VENV" "$MP_LOCK" "$MP_STAMP"
# The checked-out package wins over any installed copy; the notebooks' kernels inherit this.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND="${MPLBACKEND:-Agg}"
# Checking that every library imports takes seconds: done once per installed pair of locks and interpreters
# (a rerun with nothing changed then starts at once).
META_PY="${TRASHNET_METADATA_PYTHON:-$META_VENV/bin/python}"
MP_PY="${TRASHNET_MEDIAPIPE_PYTHON:-$MP_VENV/bin/python}"
ENV_STAMP="$VENV/.environment-ok"
meta_hash="$( { [ ! -f "$META_LOCK" ] || sha256sum "$META_LOCK"; } | cut -d' ' -f1)"
mp_hash="$( { [ ! -f "$MP_LOCK" ] || sha256sum "$MP_LOCK"; } | cut -d' ' -f1)"
env_key="$(lock_hash) ${meta_hash:-none} ${mp_hash:-none} $(command -v "$PY") $META_PY $MP_PY"
if [ ! -f "$ENV_STAMP" ] || [ "$(cat "$ENV_STAMP" 2>/dev/null)" != "$env_key" ]; then
"$META_PY" -c 'import flatbuffers
from tensorflow_lite_support.metadata import metadata_schema_py_generated, schema_py_generated' \
  || die "the TFLite metadata writer's schema does not import: delete $META_VENV and rerun"
# OpenCV's wheel (inside MediaPipe's) needs the system's libGL: without it the parity block leaves MediaPipe
# and OpenCV out and says why, so this is a warning, not a stop.
if [ "$MP_PY" != none ] && ! "$MP_PY" -c 'import cv2, mediapipe
from mediapipe.tasks.python import vision' 2>/dev/null; then
  echo "setup: warning: MediaPipe's tool venv ($MP_PY) does not import mediapipe and cv2 (Debian: apt-get" \
       "install libgl1 libglib2.0-0), so the final stage records no MediaPipe/OpenCV parity" >&2
fi
"$PY" - <<'PY' || die "the environment is incomplete: delete .venv and rerun, or fix TRASHNET_PYTHON"
import importlib, sys
missing = []
for name in ("trashnet", "papermill", "nbconvert", "ipykernel", "jinja2", "matplotlib", "weasyprint", "yaml",
             "pydantic", "sklearn"):
    try:
        importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - report every broken import, not only ImportError
        missing.append(f"{name} ({type(error).__name__}: {error})")
if sys.version_info[:2] != (3, 11):
    missing.append(f"Python 3.11 expected, this is {sys.version.split()[0]}")
if missing:
    print("missing: " + "; ".join(missing), file=sys.stderr)
    sys.exit(1)
PY
  [ -d "$VENV" ] && echo "$env_key" > "$ENV_STAMP"
fi
echo "setup: environment ok ($PY)"
[ "$setup_only" = 1 ] && exit 0

cd "$REPO"
exec "$PY" -m trashnet run ${args[@]+"${args[@]}"}
