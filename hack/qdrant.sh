#!/usr/bin/env bash
# Builds a Qdrant server from the source snapshots in ../shared/qdrant-src (or
# $FLOWREG_QDRANT_SRC) into a cache outside the repo, keyed by version:
#   ${XDG_CACHE_HOME:-~/.cache}/flowreg/qdrant/<version>/qdrant
# Skips the build when that binary exists. Progress goes to stderr; the last line of stdout is
# the binary's path.
#
# What the build needs here, and how it gets it without touching the snapshots:
# * qdrant declares rust-version 1.97; older stable toolchains build it with
#   --ignore-rust-version, except for `std::debug_assert_matches` (stable from 1.97) in
#   lib/shard: a RUSTC_WORKSPACE_WRAPPER enables that one library feature for qdrant's own
#   crates only, so dependencies keep their fingerprints.
# * git dependencies (qdrant's tonic fork, tikv/raft-rs) point at the unpacked snapshots.
# * a profile without LTO and with many codegen units, so a cold build fits a CI run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

QDRANT_VERSION=v1.19.0
src="${FLOWREG_QDRANT_SRC:-$root/../shared/qdrant-src}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/flowreg/qdrant"
out="$cache/$QDRANT_VERSION"
work="$cache/build-$QDRANT_VERSION"
jobs="${FLOWREG_BUILD_JOBS:-2}"

if [ -x "$out/qdrant" ]; then
  echo "qdrant: $QDRANT_VERSION already built" >&2
  echo "$out/qdrant"
  exit 0
fi
for tarball in "qdrant-$QDRANT_VERSION.tar.gz" raft-rs-aafb07c.tar.gz tonic-0.14.6-stand-in.tar.gz; do
  if [ ! -f "$src/$tarball" ]; then
    echo "qdrant: $src/$tarball not found (set FLOWREG_QDRANT_SRC to the snapshots' directory)" >&2
    exit 1
  fi
done

# qdrant's build scripts compile protobuf definitions with protoc (Debian: protobuf-compiler)
if [ -z "${PROTOC:-}" ] && ! command -v protoc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "qdrant: installing protobuf-compiler..." >&2
    (apt-get update -qq && apt-get install -y -qq protobuf-compiler) >&2
  else
    echo "qdrant: protoc not found: install protobuf-compiler or set PROTOC" >&2
    exit 1
  fi
fi

started=$SECONDS
mkdir -p "$work" "$out"
if [ ! -f "$work/src/.unpacked" ]; then
  echo "qdrant: unpacking sources into $work/src..." >&2
  # qdrant's workspace and its git dependencies side by side: raft-rs is a workspace of its
  # own, and a path dependency inside qdrant's tree would join qdrant's workspace.
  rm -rf "$work/src" "$work/deps"
  mkdir -p "$work/src" "$work/deps"
  tar -xzf "$src/qdrant-$QDRANT_VERSION.tar.gz" -C "$work/src"
  tar -xzf "$src/raft-rs-aafb07c.tar.gz" -C "$work/deps"
  tar -xzf "$src/tonic-0.14.6-stand-in.tar.gz" -C "$work/deps"
  manifest="$work/src/Cargo.toml"
  raft="$work/deps/raft-rs"
  tonic="$work/deps/tonic-qdrant"
  # git dependencies -> the snapshots
  sed -i \
    -e "s|^raft-proto = { git = \"[^\"]*\", rev = \"[^\"]*\"|raft-proto = { path = \"$raft/proto\"|" \
    -e "s|^raft = { git = \"[^\"]*\", rev = \"[^\"]*\"|raft = { path = \"$raft\"|" \
    -e "s|^tonic = { git = \"[^\"]*\", branch = \"[^\"]*\" }|tonic = { path = \"$tonic\" }|" \
    "$manifest"
  if grep -q 'git = "' "$manifest"; then
    echo "qdrant: a git dependency is left in $manifest:" >&2
    grep -n 'git = "' "$manifest" >&2
    exit 1
  fi
  cat >> "$manifest" <<'EOF'

[profile.flowreg-test]
inherits = "release"
lto = false
codegen-units = 16
opt-level = 2
debug = false
incremental = false
EOF
  touch "$work/src/.unpacked"
fi

wrapper="$work/rustc-wrapper.sh"
cat > "$wrapper" <<'EOF'
#!/bin/sh
# Enables std's assert_matches feature for qdrant's own crates (stable only from Rust 1.97).
rustc="$1"; shift
RUSTC_BOOTSTRAP=1 exec "$rustc" "$@" -Zcrate-attr='feature(assert_matches)'
EOF
chmod +x "$wrapper"

echo "qdrant: building $QDRANT_VERSION (cold: about 20-30 min on 2 cores)..." >&2
(
  cd "$work/src"
  CARGO_TARGET_DIR="$work/target" RUSTC_WORKSPACE_WRAPPER="$wrapper" \
    cargo build --ignore-rust-version --profile flowreg-test --bin qdrant -j "$jobs" >&2
)
cp "$work/target/flowreg-test/qdrant" "$out/qdrant.tmp"
mv "$out/qdrant.tmp" "$out/qdrant"
echo "qdrant: built in $((SECONDS - started)) s" >&2
echo "$out/qdrant"
