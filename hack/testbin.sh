#!/usr/bin/env bash
# Builds the binaries of the test control plane from Go modules, into a cache outside the repo:
#   kube-apiserver, kubectl  k8s.io/kubernetes (wrapper module hack/testbin, staging modules
#                            replaced by their published releases)
#   kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#                            the same module: a single node for the chart's pod (tests/e2e/node)
#   coredns                  github.com/coredns/coredns (go install, static): the node's
#                            cluster DNS, run as a Deployment from an image of this binary
#   etcd                     go.etcd.io/etcd/server/v3 at the version kube-apiserver's client uses
#   helm                     helm.sh/helm/v3 (go install works: no replace directives)
# Skips what is already built. Progress goes to stderr; the last line of stdout is the directory.
set -euo pipefail
cd "$(dirname "$0")/testbin"

K8S_VERSION=v1.37.2
HELM_VERSION=v3.22.0
COREDNS_VERSION=v1.14.7
dir="${FLOWREG_TESTBIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowreg/testbin/$K8S_VERSION}"
mkdir -p "$dir"
export GOFLAGS="${GOFLAGS:--trimpath} -mod=mod"
export GOTOOLCHAIN=local
jobs="${FLOWREG_BUILD_JOBS:-2}"

major_minor="${K8S_VERSION#v}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=${major_minor%%.*}"
  minor="${major_minor#*.}"
  ldflags="$ldflags -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean"
done

build() {  # name package
  if [ -x "$dir/$1" ]; then
    echo "testbin: $1 already built" >&2
    return
  fi
  local started=$SECONDS
  echo "testbin: building $1 ($2)..." >&2
  go build -p "$jobs" -ldflags "$ldflags" -o "$dir/$1.tmp" "$2" >&2
  mv "$dir/$1.tmp" "$dir/$1"
  echo "testbin: built $1 in $((SECONDS - started)) s" >&2
}

build etcd ./etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubectl k8s.io/kubernetes/cmd/kubectl
if [ "${FLOWREG_SKIP_NODE:-}" != 1 ]; then
  build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
  build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
  build kubelet k8s.io/kubernetes/cmd/kubelet
  build kube-proxy k8s.io/kubernetes/cmd/kube-proxy
  # CoreDNS: its own module; coredns.version says which release the binary is.
  if [ "$(cat "$dir/coredns.version" 2>/dev/null)" != "$COREDNS_VERSION" ]; then
    started=$SECONDS
    echo "testbin: building coredns $COREDNS_VERSION..." >&2
    tmp="$(mktemp -d)"
    (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-trimpath GOBIN="$tmp" go install -ldflags "-s -w" \
      "github.com/coredns/coredns@$COREDNS_VERSION" >&2)
    mv "$tmp/coredns" "$dir/coredns"
    rmdir "$tmp"
    echo "$COREDNS_VERSION" > "$dir/coredns.version"
    echo "testbin: built coredns in $((SECONDS - started)) s" >&2
  fi
fi
if [ ! -x "$dir/helm" ]; then
  started=$SECONDS
  echo "testbin: building helm $HELM_VERSION..." >&2
  # As helm's Makefile does: the default Kubernetes version is that of its client-go (v0.37).
  helm_ldflags="-s -w"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_ldflags="$helm_ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=37"
  done
  (cd "$dir" && GOFLAGS=-trimpath GOBIN="$dir" go install -ldflags "$helm_ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2)
  echo "testbin: built helm in $((SECONDS - started)) s" >&2
fi
echo "$dir"
