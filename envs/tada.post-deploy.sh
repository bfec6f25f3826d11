#!/usr/bin/env bash
# Run by Snakemake inside a freshly created tada environment: installs this checkout's tada
# package (editable, with the repository's version constraints). TADA_ROOT is the workflow's
# base directory, exported by rules/common.smk.
set -euo pipefail
if [ -z "${TADA_ROOT:-}" ] || [ ! -f "${TADA_ROOT}/pyproject.toml" ]; then
  echo "tada.post-deploy.sh: TADA_ROOT='${TADA_ROOT:-}' is not a tada checkout (no pyproject.toml);" \
       "run the workflow through its Snakefile, which sets it" >&2
  exit 1
fi
python -m pip install --quiet -c "${TADA_ROOT}/constraints.txt" -e "${TADA_ROOT}"
