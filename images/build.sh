#!/usr/bin/env bash
# `make images`: build the operator and the runtime (CPU variant) images from a local Debian
# base with buildah (no Docker engine, no registry), smoke-test both, print their sizes.
#
#   bash images/build.sh            # build (cached layers are reused) + smoke test
#   bash images/build.sh --no-smoke # build only
#
# Needs root, buildah and mmdebstrap (Debian packages). The base is made once with mmdebstrap
# (minbase bookworm + python3) and kept as localhost/mfpo-debian-base:bookworm. torch comes
# from the directory pip is configured to find it in (TORCH_WHEELS, default: pip's
# global.find-links), else from the PyTorch CPU index. Timings go to stdout.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
BASE=localhost/mfpo-debian-base:bookworm
OPERATOR=${OPERATOR_IMAGE:-localhost/mfpo-operator:dev}
RUNTIME=${RUNTIME_IMAGE:-localhost/mfpo-runtime:cpu-dev}
VERSION=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
pip_setting() {  # a global setting of this machine's pip configuration, else nothing
  "${PIP:-pip3}" config list 2>/dev/null | sed -n "s/^global\.$1='\(.*\)'$/\1/p" | head -n1
}
TORCH_WHEELS=${TORCH_WHEELS:-$(pip_setting find-links)}

for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "images: $tool is missing (apt-get install buildah mmdebstrap)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "images: buildah with the vfs driver and chroot isolation needs root" >&2; exit 1; }

timed() {  # timed LABEL COMMAND...: run it, then print its wall time
  local start=$SECONDS
  "${@:2}"
  echo "images: $1 took $((SECONDS - start)) s"
}

make_base() {
  if buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    echo "images: base $BASE exists"
    return
  fi
  local tar container
  tar=$(mktemp --suffix=.tar)
  mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$tar"
  container=$(buildah from scratch)
  buildah add "$container" "$tar" /
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 "$container"
  buildah commit --rm "$container" "$BASE"
  rm -f "$tar"
}

# Behind a TLS-intercepting proxy pip needs its CA bundle in the build too.
PIP_CERT_FILE=${PIP_CERT_FILE:-$(pip_setting cert)}
cert_args=()
if [ -n "$PIP_CERT_FILE" ]; then
  cert_args=(--volume "$PIP_CERT_FILE:/run/pip-ca.pem:ro" --build-arg PIP_CERT=/run/pip-ca.pem)
fi

build() {  # build IMAGE-NAME TAG ARGS...
  buildah bud "${cert_args[@]}" --layers --pull-never -f "images/$1/Dockerfile" \
    --ignorefile "images/$1/Dockerfile.dockerignore" \
    --build-arg VERSION="$VERSION" -t "$2" "${@:3}" .
}

timed "the Debian base" make_base
timed "the operator image" build operator "$OPERATOR" --build-arg PYTHON_IMAGE="$BASE"
torch_args=(--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu)
if [ -n "$TORCH_WHEELS" ]; then
  torch_args=(--volume "$TORCH_WHEELS:/torch-wheels:ro" --build-arg TORCH_FIND_LINKS=/torch-wheels)
fi
timed "the runtime image" build runtime "$RUNTIME" \
  --build-arg CUDA_DEVEL_IMAGE="$BASE" --build-arg CUDA_IMAGE="$BASE" \
  --build-arg DS_BUILD_OPS_LIST=SHM_COMM "${torch_args[@]}"

if [ "${1:-}" != "--no-smoke" ]; then
  timed "the smoke tests" bash images/smoke.sh "$OPERATOR" "$RUNTIME"
fi
echo "images: sizes"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E "mfpo-(operator|runtime|debian-base)"
