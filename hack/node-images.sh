#!/usr/bin/env bash
# Builds the images a test node runs besides the operator's, FROM scratch, with podman (the
# storage and configuration hack/image.sh sets up), into the same cache:
#   coredns  localhost/coredns:<version>  the static CoreDNS binary hack/testbin.sh builds, as
#                                         /coredns, USER 65532:65532
#   qdrant   localhost/qdrant:<version>   the Qdrant server hack/qdrant.sh builds, laid out
#            as Qdrant's own image is (WORKDIR /qdrant: ./qdrant, ./config/config.yaml,
#            ./entrypoint.sh from the same source snapshot), USER 1000:1000. Qdrant's Helm chart
#            runs `/bin/bash -c ./config/initialize.sh` (a #!/bin/sh script that execs
#            entrypoint.sh, a #!/usr/bin/env bash script) and `sleep 3` before a pod stops, so
#            the image holds bash (also as /bin/sh), env and sleep; and every shared library
#            these and qdrant load (ldd's closure, with the loader), copied from this host, where
#            the binary was linked; and this host's CA bundle at /etc/ssl/certs/, which Qdrant's
#            HTTP client loads at start-up. No package manager, no other tools.
# The tag is the release's own (Qdrant's chart takes its appVersion, v1.19.0, as the tag and
# reads it as a version); the label flowreg.key and the tar's name carry a hash of this script
# and the binary, so an unchanged input reuses the cache and a changed one rebuilds. Nothing is
# pulled. Progress goes to stderr; stdout's last two lines are the image's name and its tar (a
# docker-archive, for `ctr images import`).
# Usage: hack/node-images.sh coredns|qdrant
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
target="${1:?usage: hack/node-images.sh coredns|qdrant}"

eval "$(bash hack/image.sh --print-env | sed 's/^/export /')"
cache="${FLOWREG_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flowreg/images}"
k8s_version="$(sed -n 's/^K8S_VERSION=//p' hack/testbin.sh)"
testbin="${FLOWREG_TESTBIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowreg/testbin/$k8s_version}"

case "$target" in
  coredns)
    binary="$testbin/coredns"
    version="$(cat "$testbin/coredns.version" 2>/dev/null || true)"
    [ -x "$binary" ] && [ -n "$version" ] \
      || { echo "node-images: $binary not built (hack/testbin.sh builds it)" >&2; exit 2; }
    ;;
  qdrant)
    version="$(sed -n 's/^QDRANT_VERSION=//p' hack/qdrant.sh)"
    binary="${FLOWREG_QDRANT_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/flowreg/qdrant/$version/qdrant}"
    src="${FLOWREG_QDRANT_SRC:-$repo/../shared/qdrant-src}/qdrant-$version.tar.gz"
    [ -x "$binary" ] || { echo "node-images: $binary not built (hack/qdrant.sh builds it)" >&2; exit 2; }
    [ -f "$src" ] || { echo "node-images: $src not found (set FLOWREG_QDRANT_SRC)" >&2; exit 2; }
    ;;
  *) echo "node-images: unknown target $target (coredns or qdrant)" >&2; exit 2 ;;
esac

key="$(cat "$0" "$binary" | sha256sum | cut -c1-12)"
image="localhost/$target:$version"
tar="$cache/$target-$version-$key.tar"
built="$(podman image inspect --format '{{index .Config.Labels "flowreg.key"}}' "$image" \
  2>/dev/null || true)"
if [ "$built" = "$key" ] && [ -s "$tar" ]; then
  echo "$image"
  echo "$tar"
  exit 0
fi

started=$SECONDS
echo "node-images: building $image..." >&2
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
mkdir -p "$root"

add() {  # file [path in the image]: a copy (symlinks followed), at the same path by default
  mkdir -p "$root$(dirname "${2:-$1}")"
  cp -L "$1" "$root${2:-$1}"
}

add_closure() {  # file: the shared libraries it loads, and the dynamic loader
  local lib
  if ldd "$1" | grep -q "not found"; then
    echo "node-images: $1 needs a library this host lacks:" >&2
    ldd "$1" >&2
    exit 1
  fi
  for lib in $(ldd "$1" | grep -o '/[^ ]* (0x' | cut -d' ' -f1); do
    [ -e "$root$lib" ] || add "$lib"
  done
}

if [ "$target" = coredns ]; then
  add "$binary" /coredns
  cat > "$context/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
USER 65532:65532
EXPOSE 53 53/udp
ENTRYPOINT ["/coredns"]
EOF
else
  add "$binary" /qdrant/qdrant
  add_closure "$binary"
  tar -xzf "$src" -C "$context" config/config.yaml tools/entrypoint.sh
  add "$context/config/config.yaml" /qdrant/config/config.yaml
  add "$context/tools/entrypoint.sh" /qdrant/entrypoint.sh
  chmod 0755 "$root/qdrant/entrypoint.sh"
  # Qdrant's HTTP client loads the system's CA certificates at start-up and panics without
  # any (it reads them even when inference is off); Debian's bundle is where it looks.
  add /etc/ssl/certs/ca-certificates.crt
  for tool in bash env sleep; do
    path="$(command -v "$tool")"
    add "$path" "/usr/bin/$tool"
    add_closure "$path"
  done
  mkdir -p "$root/bin" "$root/etc" "$root/qdrant/storage" "$root/qdrant/snapshots" "$root/tmp"
  ln -s /usr/bin/bash "$root/bin/bash"
  ln -s /usr/bin/bash "$root/bin/sh"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0::/root:/sbin/nologin\nqdrant:x:1000:1000::/qdrant:/sbin/nologin\n' \
    > "$root/etc/passwd"
  printf 'root:x:0:\nqdrant:x:1000:\n' > "$root/etc/group"
  cat > "$context/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
WORKDIR /qdrant
USER 1000:1000
ENV TZ=Etc/UTC RUN_MODE=production
EXPOSE 6333 6334 6335
CMD ["./entrypoint.sh"]
EOF
fi
podman build --network none --pull=never --label "flowreg.key=$key" -t "$image" -f "$context/Containerfile" "$context" >&2
podman save --format docker-archive -o "$tar.tmp" "$image" >&2
mv "$tar.tmp" "$tar"
echo "node-images: built $image in $((SECONDS - started)) s" >&2
# The cache keeps the newest build of each target only.
podman image prune --force >/dev/null 2>&1 || true
find "$cache" -maxdepth 1 -name "$target-*.tar" ! -name "${tar##*/}" -delete
echo "$image"
echo "$tar"
