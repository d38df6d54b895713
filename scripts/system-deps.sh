#!/usr/bin/env bash
# The system programs the real-parts tests drive (tests/realparts): a PostgreSQL server, and headless
# Chromium with its ChromeDriver. Installed once with apt-get on a Debian machine where we are root;
# anywhere else this only says what to install, and those tests skip with the same advice.
# Checking is a few file tests, so `make test` pays nothing once they are there.
set -euo pipefail

have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' > /dev/null || command -v initdb > /dev/null; }
have_chromium() { [[ -x ${POLAR_MCP_TEST_CHROMIUM:-/usr/bin/chromium} && -x ${POLAR_MCP_TEST_CHROMEDRIVER:-/usr/bin/chromedriver} ]]; }

missing=()
have_postgres || missing+=(postgresql)
have_chromium || missing+=(chromium chromium-driver)
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get > /dev/null; then
  cat >&2 <<ADVICE
system-deps: missing ${missing[*]}; the tests in tests/realparts that need them will skip.
  Debian/Ubuntu: sudo apt-get install postgresql chromium chromium-driver
  elsewhere: a PostgreSQL server (initdb, pg_ctl, pg_isready, createdb on PATH), and Chromium or
  Chrome with its ChromeDriver, named by POLAR_MCP_TEST_CHROMIUM and POLAR_MCP_TEST_CHROMEDRIVER.
ADVICE
  exit 0
fi

# The postgresql package creates and starts a cluster of its own on port 5432; the tests use their
# own, so keep the package from starting anything (the standard invoke-rc.d policy hook), unless
# the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi

echo "system-deps: installing ${missing[*]} (once)" >&2
export DEBIAN_FRONTEND=noninteractive
apt_options=(-q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold)
apt-get "${apt_options[@]}" update > /dev/null
apt-get "${apt_options[@]}" install -y --no-install-recommends "${missing[@]}" > /dev/null
have_postgres && have_chromium || { echo "system-deps: still missing after the install: see above" >&2; exit 1; }
echo "system-deps: installed ${missing[*]}" >&2
