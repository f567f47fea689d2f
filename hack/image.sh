#!/usr/bin/env bash
# Builds the operator image with podman, from a Debian base made by mmdebstrap (no container
# registry is needed), into a cache outside the repo:
#   base   localhost/flowreg-base:<suite>-<key>   Debian <suite>, python3 + venv + CA certificates,
#                                                 no docs, man pages or locales; built once per key
#   image  localhost/flowreg:<version>-<key>      the Dockerfile, BASE_IMAGE=the base above
#   tar    <cache>/flowreg-<version>-<key>.tar    `podman save` (docker-archive) of the image, for
#                                                 `ctr images import` on a node with no registry
#   pause  localhost/pause:flowreg-<key> (+ tar)  `hack/image.sh pause`: the pod sandbox image a
#                                                 node needs, a static C binary FROM scratch
# <key> hashes what the result depends on (this script, the Dockerfile, the locks, the sources),
# so an unchanged tree reuses the cache and a changed one rebuilds.
# podman runs with its own storage and configuration under the cache (runc, not crun; ulimits a
# process without CAP_SYS_RESOURCE may set). Progress goes to stderr; stdout's last two lines
# are the image's name and its tar.
# Usage: hack/image.sh [flowreg|pause|--print-env]  (--print-env: podman's environment only)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

SUITE=bookworm
MIRROR="${FLOWREG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${FLOWREG_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flowreg/images}"
mkdir -p "$cache/podman/storage" "$cache/podman/run"

# podman's configuration and storage live in the cache, never in the host's /etc or /var.
cat > "$cache/podman/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
cat > "$cache/podman/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/podman/storage"
runroot = "$cache/podman/run"
EOF
export CONTAINERS_CONF="$cache/podman/containers.conf"
export CONTAINERS_STORAGE_CONF="$cache/podman/storage.conf"
if [ "${1:-}" = --print-env ]; then
  echo "CONTAINERS_CONF=$CONTAINERS_CONF"
  echo "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
  exit 0
fi

if [ "${1:-}" = pause ]; then
  key="$(cat "$0" hack/image/pause.c hack/image/Pause.Containerfile | sha256sum | cut -c1-12)"
  image="localhost/pause:flowreg-$key"
  tar="$cache/pause-$key.tar"
  if ! podman image exists "$image" || [ ! -s "$tar" ]; then
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    gcc -O2 -static -s -o "$context/pause" hack/image/pause.c
    podman build --network none --pull=never -t "$image" -f hack/image/Pause.Containerfile \
      "$context" >&2
    podman save --format docker-archive -o "$tar.tmp" "$image" >&2
    mv "$tar.tmp" "$tar"
  fi
  echo "$image"
  echo "$tar"
  exit 0
fi

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "image: $tool not found (Debian: apt-get install podman mmdebstrap runc)" >&2; exit 2; }
done

# The base: what a pod needs to run CPython, and nothing to build with.
base_packages=python3,python3-venv,ca-certificates,libstdc++6  # libstdc++: numpy, grpcio
BASE_RECIPE=1  # bump when the mmdebstrap command below changes
base_key="$(printf '%s %s %s' "$SUITE" "$base_packages" "$BASE_RECIPE" | sha256sum | cut -c1-12)"
base_image="localhost/flowreg-base:$SUITE-$base_key"
if ! podman image exists "$base_image"; then
  started=$SECONDS
  echo "image: building the Debian base $base_image with mmdebstrap..." >&2
  rootfs="$cache/base-$SUITE-$base_key.partial.tar"  # mmdebstrap writes a tar for *.tar
  # merged-usr hook: /usr merged without the usrmerge package (and the perl it drags in).
  mmdebstrap --variant=essential --include="$base_packages" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Apt::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" "$rootfs" "$MIRROR" >&2
  podman import --change 'CMD ["python3"]' "$rootfs" "$base_image" >&2
  rm -f "$rootfs"
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/flowreg-base); do
    [ "$old" = "$base_image" ] || podman rmi --force "$old" >/dev/null 2>&1 || true
  done
  echo "image: built the base in $((SECONDS - started)) s" >&2
fi

version="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)"
key="$( { sha256sum "$0" Dockerfile hack/image/* pyproject.toml README.md;
          find operator crds -type f -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum;
          echo "$base_image"; } | sha256sum | cut -c1-12)"
image="localhost/flowreg:$version-$key"
tar="$cache/flowreg-$version-$key.tar"
if ! podman image exists "$image" || [ ! -s "$tar" ]; then
  started=$SECONDS
  echo "image: building $image..." >&2
  # pip inside the build reaches the package index through this host's CA bundle.
  ca=/etc/ssl/certs/ca-certificates.crt
  ca_args=()
  if [ -f "$ca" ]; then
    ca_args=(-v "$ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
  fi
  podman build --network host --pull=never --build-arg "BASE_IMAGE=$base_image" \
    "${ca_args[@]}" -t "$image" -f Dockerfile . >&2
  podman save --format docker-archive -o "$tar.tmp" "$image" >&2
  mv "$tar.tmp" "$tar"
  echo "image: built $image in $((SECONDS - started)) s" >&2
  # The cache keeps the newest build only: older images, their tars, and build stages go.
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/flowreg); do
    [ "$old" = "$image" ] || podman rmi --force "$old" >/dev/null 2>&1 || true
  done
  find "$cache" -maxdepth 1 -name 'flowreg-*.tar' ! -name "${tar##*/}" -delete
  podman image prune --force >/dev/null 2>&1 || true
fi
echo "$image"
echo "$tar"
