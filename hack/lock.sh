#!/usr/bin/env bash
# Regenerates the image's locks (exact versions with hashes, every supported Python):
#   hack/image/requirements.txt        the operator's runtime: pyproject's dependencies + [operator]
#   hack/image/build-requirements.txt  the wheel's build backend (pyproject's build-system)
# Needs uv (`pip install uv`). Run it after changing dependencies in pyproject.toml; a test
# fails while a dependency is missing from the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-uv}"
common=(--universal --generate-hashes --python-version 3.10 --no-header --quiet)
"$uv" pip compile "${common[@]}" pyproject.toml --extra operator -o hack/image/requirements.txt
# qdrant-client asks for httpx[http2]: pip's --require-hashes treats a requirement with extras
# as one of its own, and without the extra on the pin it picks the newest httpx, which has no
# hash here. The pin names the extra (the same files, the same hashes).
sed -i 's/^httpx==/httpx[http2]==/' hack/image/requirements.txt
python3 - <<'PY' | "$uv" pip compile "${common[@]}" - -o hack/image/build-requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))
PY
