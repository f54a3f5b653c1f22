#!/usr/bin/env bash
# Installs what building, testing and demoing kjb needs; fast and quiet when
# everything is already there, so every other script calls it first.
#
#   scripts/deps.sh            Debian packages, the Python venv (.venv/) for
#                              the e2e tests, and the Kafka jars (cached in
#                              ${KJB_CACHE_DIR:-~/.cache/kjb})
#   scripts/deps.sh --no-venv  the same without the Python venv
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

want_venv=1
for arg in "$@"; do
  case $arg in
    --no-venv) want_venv=0 ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "deps.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

# Build: compiler, CMake, pkg-config and the -dev packages CMakeLists.txt
# looks for; clang and its sanitizer/libFuzzer runtimes (libclang-rt-14-dev,
# only recommended by clang, so named here) for scripts/fuzz. Tests and
# demo: PostgreSQL server binaries, kcat, curl, a JRE and Maven for Kafka,
# Python's venv. Observability tests: promtool (prometheus) checks the
# metrics and alert rules, and the dashboard is driven in headless Chromium
# (with a font, so that the screenshot shows text). Deployment tests: man-db
# and groff-base render the man pages, systemd's systemd-analyze checks the
# unit. Security tests: openssl makes the test CA and certificates; ss and
# ip (iproute2) show what kjb listens on and the machine's addresses.
PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format-16
  librdkafka-dev libavro-dev libconfig-dev libpq-dev libmicrohttpd-dev
  libcurl4-openssl-dev libjansson-dev libcmocka-dev
  postgresql kcat curl ca-certificates python3 python3-venv openssl iproute2
  prometheus chromium fonts-dejavu-core
  man-db groff-base systemd
)
# Java and Maven may come from elsewhere (SDKMAN, a JDK tarball); only
# install Debian's when there is none.
command -v java >/dev/null || PACKAGES+=(default-jre-headless)
command -v mvn >/dev/null || PACKAGES+=(maven)

installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null \
  | awk '$2 == "installed" { print $1 }' || true)
missing=()
for pkg in "${PACKAGES[@]}"; do
  grep -qx "$pkg" <<<"$installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  echo "deps.sh: installing Debian packages: ${missing[*]}" >&2
  SUDO=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || {
      echo "deps.sh: not root and no sudo; install these first: ${missing[*]}" >&2
      exit 1
    }
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ((want_venv)); then
  req=tests/e2e/requirements.txt
  stamp=.venv/.requirements.sha256
  want=$( (cat "$req"; /usr/bin/python3 --version 2>&1) | sha256sum | cut -d' ' -f1)
  if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "deps.sh: installing $req into .venv/" >&2
    # Debian's interpreter, not whatever python3 comes first on PATH: it is
    # the one python3-venv belongs to, and the same on every machine.
    if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
      rm -rf .venv
      /usr/bin/python3 -m venv .venv
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check --only-binary=:all: -r "$req"
    echo "$want" >"$stamp"
  fi
fi

scripts/kafka.sh fetch
