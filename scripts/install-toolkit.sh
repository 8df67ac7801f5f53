#!/usr/bin/env bash
# Install stackci from this checkout into its own virtual environment and put only the
# `stackci` command on PATH. The user's project keeps its own interpreter and packages:
# nothing of stackci's environment (its python3, its pip packages) becomes visible to it.
#
# Environment:
#   STACKCI_TOOLKIT_SCOPE    shared: one environment per stackci version and source hash,
#                            reused by later jobs on the same machine [default]
#                            job: an environment of this job only, in the runner's temporary
#                            folder ($RUNNER_TEMP, $AGENT_TEMPDIRECTORY), which the runner empties
#                            between jobs; use it on self-hosted runners that are not ephemeral
#   STACKCI_TOOLKIT_DIR      where shared environments live
#                            [default: $RUNNER_TOOL_CACHE/stackci, $AGENT_TOOLSDIRECTORY/stackci,
#                             or ~/.cache/stackci]
#   STACKCI_INSTALL_PYTHON   the interpreter that creates the environment (Python 3.10 or
#                            newer) [default: python3]
#
# An environment is keyed by the version and a hash of the sources, so a second run with
# the same checkout reuses it (well under two seconds) and a changed checkout never does.
# stackci's dependencies are installed at the exact versions of scripts/constraints.txt
# (part of the hash), so a given stackci commit always runs with the same packages.
#
# A reused environment is trusted: on a machine that runs jobs of different trust (a
# persistent self-hosted runner taking pull-request jobs and prod deploys), a shared one
# could have been changed by an earlier job. There, use STACKCI_TOOLKIT_SCOPE=job.
set -euo pipefail

source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${STACKCI_INSTALL_PYTHON:-python3}"
started=$(date +%s)

say() { printf 'stackci setup: %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 2; }

command -v "$python" >/dev/null 2>&1 || fail "no '$python' on PATH; install Python 3.10+ (actions/setup-python, UsePythonVersion@0) or set STACKCI_INSTALL_PYTHON"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || fail "'$python' is older than Python 3.10; install a newer one or set STACKCI_INSTALL_PYTHON"
[ -f "$source_dir/pyproject.toml" ] || fail "no pyproject.toml in $source_dir: is this a stackci checkout?"

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$source_dir/src/stackci/__init__.py")
[ -n "$version" ] || fail "cannot read the version from $source_dir/src/stackci/__init__.py"
key=$(cd "$source_dir" \
  && find pyproject.toml scripts src -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)

scope="${STACKCI_TOOLKIT_SCOPE:-shared}"
case "$scope" in
  shared)
    base="${STACKCI_TOOLKIT_DIR:-}"
    if [ -z "$base" ]; then
      if [ -n "${RUNNER_TOOL_CACHE:-}" ]; then base="$RUNNER_TOOL_CACHE/stackci"
      elif [ -n "${AGENT_TOOLSDIRECTORY:-}" ]; then base="$AGENT_TOOLSDIRECTORY/stackci"
      else base="${XDG_CACHE_HOME:-$HOME/.cache}/stackci"; fi
    fi ;;
  job)
    job_temp="${RUNNER_TEMP:-${AGENT_TEMPDIRECTORY:-}}"
    [ -n "$job_temp" ] || fail "STACKCI_TOOLKIT_SCOPE=job needs the runner's per-job temporary folder (RUNNER_TEMP on GitHub, AGENT_TEMPDIRECTORY on Azure); outside CI leave it unset or set STACKCI_TOOLKIT_DIR"
    base="$job_temp/stackci-toolkit" ;;
  *) fail "STACKCI_TOOLKIT_SCOPE is '$scope'; set it to shared (reuse across jobs, the default) or job (this job only)" ;;
esac
constraints="$source_dir/scripts/constraints.txt"
[ -f "$constraints" ] || fail "no scripts/constraints.txt in $source_dir: is this a complete stackci checkout?"
venv="$base/$version-$key"
bin="$venv/path"   # holds only `stackci`; this folder, not the venv's bin, goes on PATH
mkdir -p "$base"

install() {
  if [ -f "$venv/.complete" ] && "$bin/stackci" --version >/dev/null 2>&1; then
    say "reusing stackci $version in $venv"
    return
  fi
  say "installing stackci $version into $venv ($scope, dependencies from scripts/constraints.txt)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    --constraint "$constraints" "$source_dir"
  mkdir -p "$bin"
  ln -sf "$venv/bin/stackci" "$bin/stackci"
  "$bin/stackci" --version >/dev/null
  touch "$venv/.complete"
}

if command -v flock >/dev/null 2>&1; then
  # Two jobs on one self-hosted runner must not build the same environment at once.
  exec 9>"$base/.lock"
  flock 9
  install
  flock -u 9
else
  install
fi

if [ -n "${GITHUB_PATH:-}" ]; then
  printf '%s\n' "$bin" >> "$GITHUB_PATH"
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    printf 'version=%s\n' "$version"
    printf 'executable=%s\n' "$bin/stackci"
  } >> "$GITHUB_OUTPUT"
fi
if [ "${TF_BUILD:-}" = "True" ] || [ "${TF_BUILD:-}" = "true" ]; then
  printf '##vso[task.prependpath]%s\n' "$bin"
  printf '##vso[task.setvariable variable=version;isOutput=true]%s\n' "$version"
  printf '##vso[task.setvariable variable=executable;isOutput=true]%s\n' "$bin/stackci"
fi
say "$("$bin/stackci" --version) ready in $(( $(date +%s) - started ))s (on PATH: $bin)"
