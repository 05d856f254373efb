#!/usr/bin/env bash
# Runs every bench/*.py with the project's venv python; a failing bench does not hide the others'
# figures, but makes the script exit non-zero.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${MESHCTL_PYTHON:-$root/.venv/bin/python}"
if [[ ! -x "$py" ]]; then
  echo "no python at $py (create the venv or set MESHCTL_PYTHON)" >&2
  exit 1
fi
cd "$root" || exit 1
shopt -s nullglob
failed=()
for bench in bench/*.py; do
  echo "=== $bench"
  if ! "$py" "$bench"; then
    failed+=("$bench")
  fi
  echo
done
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
