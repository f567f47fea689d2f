#!/usr/bin/env bash
# Builds Flux's source-controller and kustomize-controller for the GitOps end-to-end tests, from
# the source snapshots in ../shared/flux-src (or $FLOWREG_FLUX_SRC): `<repo>-<commit>.tar.gz`.
# The released modules cannot be installed from the module proxy (they need fluxcd/pkg
# sub-modules it does not serve, and carry replace directives), so each snapshot is unpacked
# into the cache and built with `go build .` in its own tree, its replace directives as they
# are. The cache directory is keyed by the snapshots' commits; their CRDs (config/crd/bases/)
# are copied next to the binaries. Also builds hack/kstatus (cli-utils' status computation).
# Go's module and build caches are the defaults, shared with hack/testbin.sh.
# Skips what is already built. `hack/flux.sh kstatus` builds only the kstatus program.
# Progress goes to stderr; the last line of stdout is the directory.
set -euo pipefail
cd "$(dirname "$0")"
hack="$PWD"

src="${FLOWREG_FLUX_SRC:-$hack/../../shared/flux-src}"
src="$(cd "$src" && pwd)"
snapshot() {  # repo -> path of its single snapshot
  local found=("$src/$1"-*.tar.gz)
  if [ ! -f "${found[0]}" ] || [ "${#found[@]}" != 1 ]; then
    echo "flux: need exactly one $src/$1-<commit>.tar.gz" >&2
    exit 1
  fi
  echo "${found[0]}"
}
sc_tar="$(snapshot source-controller)"
kc_tar="$(snapshot kustomize-controller)"
commit() { local base="${1##*/}"; base="${base%.tar.gz}"; echo "${base##*-}"; }
key="source-controller-$(commit "$sc_tar")_kustomize-controller-$(commit "$kc_tar")"
dir="${FLOWREG_FLUX_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowreg/flux/$key}"
mkdir -p "$dir/crds"
export GOFLAGS="${GOFLAGS:--trimpath} -mod=mod"
export GOTOOLCHAIN=local
jobs="${FLOWREG_BUILD_JOBS:-2}"

build_controller() {  # name tarball
  local name="$1" tarball="$2"
  if [ -x "$dir/$name" ]; then
    echo "flux: $name already built" >&2
    return
  fi
  local started=$SECONDS
  echo "flux: building $name from ${tarball##*/}..." >&2
  rm -rf "$dir/src/$name"
  mkdir -p "$dir/src"
  tar -xzf "$tarball" -C "$dir/src"
  (cd "$dir/src/$name" && go build -p "$jobs" -ldflags "-s -w" -o "$dir/$name.tmp" . >&2)
  cp "$dir/src/$name"/config/crd/bases/*.yaml "$dir/crds/"
  mv "$dir/$name.tmp" "$dir/$name"
  rm -rf "$dir/src/$name"
  rmdir "$dir/src" 2>/dev/null || true
  echo "flux: built $name in $((SECONDS - started)) s" >&2
}

if [ "${1:-}" != kstatus ]; then
  build_controller source-controller "$sc_tar"
  build_controller kustomize-controller "$kc_tar"
fi

if [ ! -x "$dir/kstatus" ] || [ "$hack/kstatus/main.go" -nt "$dir/kstatus" ] \
    || [ "$hack/kstatus/go.mod" -nt "$dir/kstatus" ]; then
  started=$SECONDS
  echo "flux: building kstatus (sigs.k8s.io/cli-utils)..." >&2
  (cd "$hack/kstatus" && GOFLAGS="${GOFLAGS/-mod=mod/-mod=readonly}" \
    go build -ldflags "-s -w" -o "$dir/kstatus.tmp" . >&2)
  mv "$dir/kstatus.tmp" "$dir/kstatus"
  echo "flux: built kstatus in $((SECONDS - started)) s" >&2
fi
echo "$dir"
