#!/usr/bin/env bash
# Build the sdist and wheel, install the wheel in a clean virtual environment, and run
# `pyro --version`, `pyro doctor` and one real `pyro run` from that install (the later
# commands through the warm CLI helper the first one starts, as a user's would).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
export PYRO_HOME="$out/home" PYRO_CLI_HELPER=1
trap 'pkill -f -- "--home $PYRO_HOME" || true; rm -rf "$out"' EXIT
uv build --quiet --out-dir "$out/dist"
ls "$out/dist"
wheel=$(ls "$out"/dist/*.whl)
python3 - "$out"/dist/*.tar.gz "$wheel" <<'PY'
import sys, tarfile, zipfile
sdist = tarfile.open(sys.argv[1]).getnames()
wheel = zipfile.ZipFile(sys.argv[2]).namelist()
for needed in ("pyro_mcp/guest/agent.py", "pyro_mcp/environments/customize.sh"):
    assert any(n.endswith(needed) for n in sdist), f"sdist lacks {needed}"
    assert any(n.endswith(needed) for n in wheel), f"wheel lacks {needed}"
print(f"sdist: {len(sdist)} files, wheel: {len(wheel)} files")
PY
uv venv --quiet --python 3.11 "$out/venv"
uv pip install --quiet --python "$out/venv/bin/python" "$wheel"
pyro="$out/venv/bin/pyro"
version=$("$pyro" --version)
echo "$version"
[ "$version" = "pyro 3.6.0" ]
for _ in $(seq 100); do [ -S "$PYRO_HOME/cli-helper.sock" ] && break; sleep 0.1; done
[ -S "$PYRO_HOME/cli-helper.sock" ] || { echo "dist-check: no CLI helper started"; exit 1; }
"$pyro" env list
"$pyro" doctor
"$pyro" run debian:12 -- git --version
echo "dist-check: ok"
