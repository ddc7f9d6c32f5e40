#!/usr/bin/env bash
# Creates (idempotently) the Python venv used by butterfly-api's tests at
# $REPO/.venv and installs pyzmq, protobuf, grpcio-tools and cryptography.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python3" ]; then
    if ! "$py" -m venv "$venv" 2>/dev/null; then
        echo "python3 -m venv failed; installing python3-venv" >&2
        apt-get update && apt-get install -y python3-venv
        "$py" -m venv "$venv"
    fi
fi
want="pyzmq protobuf grpcio-tools cryptography"
if ! "$venv/bin/python3" -c "import zmq, google.protobuf, grpc_tools.protoc, cryptography" 2>/dev/null; then
    "$venv/bin/python3" -m pip install --quiet --upgrade pip
    # shellcheck disable=SC2086
    "$venv/bin/python3" -m pip install --quiet $want
fi
"$venv/bin/python3" -c "import zmq, google.protobuf, grpc_tools.protoc, cryptography; print('python venv ready:', '$venv', 'pyzmq', zmq.__version__, 'protobuf', google.protobuf.__version__)"
