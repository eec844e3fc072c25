#!/usr/bin/env bash
# Smoke-test the images `images/build.sh` built (root, buildah, chroot isolation):
#   operator: no torch; `mfpo-operator --help` as uid 10001 on a read-only root (the chart's
#             securityContext), with only /tmp writable;
#   runtime:  as uid 1000, a tiny datagen stage via `mfpo-stage --config` writes its
#             termination summary; DeepSpeed ZeRO-2 (CPU ops) starts without compiling.
#   bash images/smoke.sh OPERATOR-IMAGE RUNTIME-IMAGE
set -euo pipefail
OPERATOR=${1:?operator image}
RUNTIME=${2:?runtime image}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
containers=()
cleanup() {
  for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

# --- operator: the image's root bind-mounted read-only in a private mount namespace, /tmp a
# tmpfs (the chart's emptyDir), run as the image's user.
c=$(buildah from --pull-never "$OPERATOR"); containers+=("$c")
user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$OPERATOR")
[ "${user%%:*}" != 0 ] && [ -n "$user" ] || fail "operator image runs as root ($user)"
root=$(buildah mount "$c")
unshare --mount --propagation private bash -euo pipefail -c '
  ro=$(mktemp -d)
  mount --bind "$1" "$ro" && mount -o remount,bind,ro "$ro"
  mount -t tmpfs tmpfs "$ro/tmp"
  run_as() { local user=$1; shift; chroot --userspec="$user" "$ro" /usr/bin/env HOME=/tmp PATH=/opt/mfpo/bin:/usr/bin:/bin "$@"; }
  run_as "$2" sh -c "test \$(id -u) != 0" || { echo "not non-root"; exit 1; }
  # Even root cannot write there: the mount is read-only, not just the permissions.
  if chroot "$ro" /bin/touch /etc/probe 2>/dev/null; then echo "root file system is writable"; exit 1; fi
  run_as "$2" python3 -c "import importlib.util as u, sys; sys.exit(u.find_spec(\"torch\") is not None)" \
    || { echo "torch is importable in the operator image"; exit 1; }
  run_as "$2" mfpo-operator --help > /dev/null
  echo "smoke: operator: mfpo-operator --help as uid $(run_as "$2" id -u) on a read-only root: ok; no torch: ok"
' smoke "$root" "$user" || fail "operator image"
buildah umount "$c" >/dev/null

# --- runtime: as the image's user, in a container with a bind-mounted work directory.
user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$RUNTIME")
[ "${user%%:*}" != 0 ] && [ -n "$user" ] || fail "runtime image runs as root ($user)"
chown "$user" "$WORK"
cp "$HERE/smoke_runtime.py" "$WORK/"
c=$(buildah from --pull-never "$RUNTIME"); containers+=("$c")
in_runtime() { buildah run --user "$user" --volume "$WORK:/work" "$c" -- "$@"; }
in_runtime python3 /work/smoke_runtime.py prepare /work
in_runtime env MFPO_TERMINATION_LOG=/work/termination-log mfpo-stage --config /work/datagen.json --no-progress \
  || fail "mfpo-stage exited $?"
[ -s "$WORK/termination-log" ] || fail "no termination summary"
python3 - "$WORK/termination-log" <<'PY' || fail "termination summary"
import json, sys
summary = json.load(open(sys.argv[1]))
assert summary["status"] == "succeeded" and summary["stage"] == "datagen", summary
print("smoke: runtime: mfpo-stage datagen as non-root wrote its termination summary:", json.dumps(summary)[:300])
PY
in_runtime env TORCH_EXTENSIONS_DIR=/work/torch_extensions python3 /work/smoke_runtime.py zero2 \
  | tail -n1 | sed 's/^/smoke: runtime: ZeRO-2 without compiling: /' || fail "ZeRO-2"
echo "smoke: all passed"
