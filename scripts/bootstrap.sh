#!/usr/bin/env bash
# Prepare a machine for tickagg: PostgreSQL server binaries, plpgsql_check, and
# the repo-local virtualenv .venv with the package installed editable.
#   scripts/bootstrap.sh [dev|demo]     (default: dev, i.e. with test/lint tools)
# Idempotent and non-interactive (fresh Debian 12, root or sudo, CI=true, no stdin);
# a second run only checks a few files and returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-dev}"
case "$mode" in
  dev) extras='.[dev]' ;;
  demo) extras='.[chart]' ;;  # the demo ends by drawing a chart
  *) echo "usage: $0 [dev|demo]" >&2; exit 2 ;;
esac

export DEBIAN_FRONTEND=noninteractive
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo -n); fi  # -n: never prompt (no stdin in CI)

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    "${sudo[@]}" apt-get update -qq
    apt_updated=1
  fi
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

server_major() {
  # Newest installed server major version, e.g. 15.
  local d best=0 v
  for d in /usr/lib/postgresql/*/bin/initdb; do
    [ -e "$d" ] || continue
    v="${d#/usr/lib/postgresql/}"; v="${v%%/*}"
    [ "$v" -gt "$best" ] && best="$v"
  done
  echo "$best"
}

if [ "$(server_major)" -eq 0 ]; then
  echo "bootstrap: installing PostgreSQL server" >&2
  apt_install postgresql
fi
major="$(server_major)"

if [ ! -e "/usr/share/postgresql/$major/extension/plpgsql_check.control" ]; then
  echo "bootstrap: installing plpgsql_check for PostgreSQL $major" >&2
  apt_install "postgresql-$major-plpgsql-check"
fi

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt_install python3-venv  # Debian splits venv/ensurepip out of python3
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  python3 -m venv .venv
fi

# Reinstall only when pyproject.toml changed; a dev install also satisfies demo.
hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
stamp=.venv/.tickagg-install
installed="$(cat "$stamp" 2>/dev/null || true)"
if [ "$installed" != "dev:$hash" ] && [ "$installed" != "$mode:$hash" ]; then
  echo "bootstrap: installing tickagg $extras into .venv" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$extras"
  echo "$mode:$hash" > "$stamp"
fi
