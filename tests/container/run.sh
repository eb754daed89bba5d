#!/usr/bin/env bash
# The real container test: build the image with podman and run it on loopback.
# Follows ../shared/docs/container-here.md: no Docker engine and no image registry
# here, so the base image is a stand-in debootstrapped from the Debian mirror and
# imported under the name the Dockerfile asks for.  Needs root and apt-get; otherwise
# it says why and skips.  Cleans up what it created.
set -euo pipefail
cd "$(dirname "$0")/../.."

skip() { echo "container-test: SKIPPED: $*"; exit 0; }
fail() { echo "container-test: FAILED: $*"; exit 1; }
[ "$(id -u)" = 0 ] || skip "not root (podman and debootstrap need root here)"
command -v apt-get >/dev/null || skip "no apt-get to install podman"

if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null || ! command -v runc >/dev/null; then
  echo "container-test: installing podman, runc, debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman buildah debootstrap runc uidmap slirp4netns fuse-overlayfs containernetworking-plugins >/dev/null
fi

BASE=$(awk 'toupper($1)=="FROM"{print $2; exit}' Dockerfile)
WORK=$(mktemp -d /var/tmp/bpserve-ct.XXXXXX)
NAME="bpserve-ct-$$"
IMAGE="localhost/bpserve:ct-$$"
VOLUME="bpserve-ct-models-$$"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN="ct-token-$$"

cat > "$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
cat > "$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/graph"
runroot = "$WORK/run"
CONF
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"

cleanup() {
  podman rm -f "$NAME" >/dev/null 2>&1 || true
  podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  podman rmi -f "$IMAGE" "docker.io/library/$BASE" >/dev/null 2>&1 || true
  podman system reset -f >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The stand-in base: a minimal Debian with Python 3.11, cached between runs.
CACHE=/var/tmp/bpserve-standin-bookworm.tar
if [ ! -s "$CACHE" ]; then
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  echo "container-test: debootstrap a stand-in for $BASE from $MIRROR"
  debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$WORK/rootfs" "$MIRROR" >/dev/null
  rm -f "$WORK"/rootfs/usr/lib/python3.11/EXTERNALLY-MANAGED
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/"
  tar -C "$WORK/rootfs" -cf "$CACHE.part" . && mv "$CACHE.part" "$CACHE"
  rm -rf "$WORK/rootfs"
fi
podman import --change 'CMD ["python3"]' "$CACHE" "docker.io/library/$BASE" >/dev/null

echo "container-test: podman build"
podman build --format docker -q -t "$IMAGE" . >/dev/null

echo "container-test: run on 127.0.0.1:$PORT"
podman run -d --name "$NAME" -p "127.0.0.1:$PORT:8000" -e "BPSERVE_TRAIN_TOKEN=$TOKEN" \
  -v "$VOLUME:/models" "$IMAGE" >/dev/null

python3 - "$PORT" "$TOKEN" <<'PY' || { podman logs "$NAME" | tail -30; fail "HTTP checks"; }
import json, sys, time, urllib.request
port, token = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
def call(path, body=None, auth=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {auth}"} if auth else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())
for _ in range(240):  # 0.5 s apart: a count that only ends a container that hangs
    try:
        status, body = call("/readyz")
        if status == 200:
            break
    except OSError:
        pass
    time.sleep(0.5)
else:
    sys.exit("never ready")
print("readyz:", body)
status, body = call("/predict", {"inputs": [[0.0] * 64]})
assert status == 200 and body["model"] == "digits" and len(body["outputs"][0]) == 10, body
print("predict:", body["labels"])
status, body = call("/train-step", {"inputs": [[0.0] * 64], "targets": ["0"]}, auth=token)
assert status == 200 and body["step"] == 1, body
print("train-step:", body)
PY

uid=$(podman exec "$NAME" id -u)
[ "$uid" != 0 ] || fail "runs as root"
echo "container-test: uid $uid"
podman healthcheck run "$NAME" || fail "HEALTHCHECK"
echo "container-test: healthcheck passed"
# Runtime image holds the runtime dependencies only.
podman exec "$NAME" python -m pip list --format=freeze > "$WORK/pip.txt"
if grep -i -E '^(pytest|hypothesis|ruff|scikit-learn|matplotlib|torch|hadolint)' "$WORK/pip.txt"; then
  fail "dev packages in the runtime image"
fi
for dep in numpy Flask pydantic gunicorn safetensors; do
  grep -qi "^$dep==" "$WORK/pip.txt" || fail "$dep missing from the image"
done

# A graceful stop is exit code 0: had the server not stopped on SIGTERM within the 30 s
# podman allows, podman would have killed it (exit 137). No stopwatch needed.
podman stop -t 30 "$NAME" >/dev/null
code=$(podman inspect "$NAME" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || { podman logs "$NAME" | tail -20; fail "exit code $code after podman stop"; }
echo "container-test: stopped cleanly (exit 0)"
echo "container-test: 1 passed, 0 failed"
