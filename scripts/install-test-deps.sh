#!/usr/bin/env bash
# install-test-deps.sh installs the Debian packages Warden's tests run for
# real: rsyslog with its GnuTLS stream driver (the off-host forwarding tests
# in safety/outbox start rsyslogd on loopback), openssl (certificates) and
# systemd (systemd-analyze checks the shipped unit file).
#
# Idempotent: when everything is present it exits at once. Needs root to
# install; runs `apt-get update` once, only when something is missing.
set -euo pipefail

pkgs=(rsyslog rsyslog-gnutls openssl systemd)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "install-test-deps: need Debian packages ${missing[*]}; run: sudo $0" >&2
	exit 1
fi

echo "install-test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
# --no-install-recommends keeps logrotate and friends out; the tests start
# rsyslogd themselves and never use the system service.
apt-get install -y --no-install-recommends "${missing[@]}"

command -v rsyslogd >/dev/null || { echo "install-test-deps: rsyslogd still missing after install" >&2; exit 1; }
