#!/usr/bin/env bash
# Installs, from Debian's packages, what the image and node tests need: podman (runc, not crun),
# mmdebstrap for the base image, containerd, the CNI plugins and iptables for the node.
# Needs root and apt-get; installs only what is missing. Without these tools the image and node
# tests skip, and the run ends with a "NOT TESTED ON THIS MACHINE" banner saying so.
set -euo pipefail
packages=(podman runc mmdebstrap containerd containernetworking-plugins iptables uidmap
          fuse-overlayfs gcc libc6-dev)
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "container-tools: needs root and apt-get; the image and node tests will skip" >&2
  exit 1
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  started=$SECONDS
  echo "container-tools: installing ${missing[*]}..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  echo "container-tools: installed in $((SECONDS - started)) s" >&2
fi
