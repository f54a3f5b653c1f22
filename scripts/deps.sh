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
# looks for, and those librdkafka's own build needs where it is built here
# (below); clang and its sanitizer/libFuzzer runtimes (libclang-rt-14-dev,
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
  libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev xz-utils
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

# librdkafka 2.6 or newer (DESIGN.md, Platform). Debian 12's is 2.0.2, so
# where the system's is older, the librdkafka source package of Debian 13
# is built once into $CACHE/librdkafka-<version>, and $CACHE/librdkafka
# points at it; CMakeLists.txt links it from there (with an rpath). The
# files are pinned by their SHA-256, as in the Debian 13 Sources index.
# kjb's own fixes go on top, from scripts/patches/librdkafka/, and bump
# RDKAFKA_KJB so that every machine rebuilds (a system librdkafka has none):
#   oidc-jwt-payload-nul.patch  sasl.oauthbearer.method=oidc parsed the
#     decoded JWT payload as a string without its terminating NUL, an
#     over-read whenever the payload's base64 needs no padding
RDKAFKA_MIN=2.6.0
RDKAFKA_DEB=2.8.0-1
RDKAFKA_KJB=kjb1
RDKAFKA_SHA256=(
  "librdkafka_2.8.0-1.dsc 0e9f099090072fe33da42303e1878f7f4713f91b94aa6523a9d630fe67eb2b51"
  "librdkafka_2.8.0.orig.tar.gz 5bd1c46f63265f31c6bfcedcde78703f77d28238eadf23821c2b43fc30be3e25"
  "librdkafka_2.8.0-1.debian.tar.xz 85381d3e0f2f8a5f871a408df59ed7ee3071a7bdbce9adefabfc5d3324418ed1"
)
CACHE=${KJB_CACHE_DIR:-$HOME/.cache/kjb}
rdkafka_prefix=$CACHE/librdkafka-$RDKAFKA_DEB.$RDKAFKA_KJB
mkdir -p "$CACHE"
if pkg-config --atleast-version="$RDKAFKA_MIN" rdkafka; then
  # The system's will do; a link left from an older system would shadow it.
  rm -f "$CACHE/librdkafka"
elif [[ ! -f $rdkafka_prefix/.built ]]; then
  echo "deps.sh: librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo none) is older than" \
    "$RDKAFKA_MIN; building Debian 13's librdkafka $RDKAFKA_DEB into $rdkafka_prefix" >&2
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  for entry in "${RDKAFKA_SHA256[@]}"; do
    read -r file sum <<<"$entry"
    curl -fsS --retry 3 -o "$src/$file" "${KJB_DEBIAN_MIRROR:-https://deb.debian.org/debian}/pool/main/libr/librdkafka/$file"
    echo "$sum  $src/$file" | sha256sum -c --quiet - || { echo "deps.sh: $file: checksum mismatch" >&2; exit 1; }
  done
  # dpkg-source unpacks and applies Debian's patches; the checksums above
  # stand in for the signature check.
  (cd "$src" && dpkg-source --no-check -x "librdkafka_$RDKAFKA_DEB.dsc" tree >/dev/null)
  for patch in scripts/patches/librdkafka/*.patch; do
    patch -d "$src/tree" -p1 --forward --quiet <"$patch" || { echo "deps.sh: $patch does not apply" >&2; exit 1; }
  done
  rm -rf "$rdkafka_prefix"
  (
    cd "$src/tree"
    ./configure --prefix="$rdkafka_prefix" >"$src/configure.log" 2>&1 \
      || { tail -n 30 "$src/configure.log" >&2; exit 1; }
    # The C library only: kjb needs neither the C++ one nor the examples.
    make -j"$(nproc)" -C src >"$src/make.log" 2>&1 || { tail -n 30 "$src/make.log" >&2; exit 1; }
    make -C src install >/dev/null
  )
  touch "$rdkafka_prefix/.built"
  rm -rf "$src"
  trap - EXIT
fi
if [[ -f $rdkafka_prefix/.built ]] && ! pkg-config --atleast-version="$RDKAFKA_MIN" rdkafka; then
  ln -sfn "librdkafka-$RDKAFKA_DEB.$RDKAFKA_KJB" "$CACHE/librdkafka"
fi

scripts/kafka.sh fetch
