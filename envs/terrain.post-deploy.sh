#!/usr/bin/env bash
# Snakemake runs this once, inside the freshly created conda env (snakemake --sdm conda): install the
# sat2lod package from this checkout WITHOUT dependencies (the env file pins them all, from conda-forge).
# Editable, so package edits need no env rebuild. Snakemake runs it from the workflow's working
# directory; when that is not the repository root, export SAT2LOD_SRC=/path/to/sat2lod first.
set -euo pipefail
src="${SAT2LOD_SRC:-$PWD}"
if ! grep -qs '^name = "sat2lod"' "$src/pyproject.toml"; then
  echo "sat2lod post-deploy: $src/pyproject.toml is not the sat2lod package;" \
       "run snakemake from the repository root or export SAT2LOD_SRC=/path/to/sat2lod" >&2
  exit 1
fi
python -m pip install --no-deps --no-build-isolation --quiet -e "$src"
