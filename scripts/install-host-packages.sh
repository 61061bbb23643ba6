#!/usr/bin/env bash
# Packages the integration tests' hosts need: the default image boots from this machine's root
# filesystem, so what the hosts run is installed here; the Debian 13 image (tests/hosts/image.py)
# is built by mmdebstrap, which checks its packages against debian-archive-keyring's trixie keys.
# certbot runs on the hosts (tls: acme); pebble, the ACME test server, runs here, started by the
# HTTPS tests (tests/integration/tlskit.py).
set -euo pipefail
pkgs=(systemd-container openssh-server nginx sudo python3-venv postgresql iproute2 git
  redis-server mmdebstrap debian-archive-keyring certbot pebble)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A keyring older than Debian 13's release has no trixie keys: bring the current one.
if [ ! -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ]; then
  missing+=(debian-archive-keyring)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Services must not start on this machine itself: the hosts start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
