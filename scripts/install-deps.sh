#!/bin/sh
# Installs the Debian 12 packages peyvand needs to build, run and test.
# Idempotent: does nothing (and needs no network) when everything is present.
set -eu
PKGS="build-essential cmake pkg-config libuv1-dev libssl-dev libexpat1-dev libyaml-dev
libsqlite3-dev libidn2-dev libicu-dev libcmocka-dev libc-ares-dev libcurl4-openssl-dev python3 python3-slixmpp python3-pytest
openssl prosody lua-unbound"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
# Packages like prosody start their daemon on install; the tests start their own on
# loopback, so keep Debian's from starting (policy-rc.d 101 = "not allowed"), unless
# the machine already has a policy of its own.
added_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod 755 /usr/sbin/policy-rc.d
	added_policy=1
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing || rc=$?
[ -n "$added_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
exit ${rc:-0}
