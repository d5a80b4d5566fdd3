#!/bin/sh
# `make run`: start a development server for the domain "localhost" with its data in
# ./run (SQLite database, self-signed certificate created on first start).
set -eu
BUILD=${1:-build}
RUNDIR=${2:-run}
mkdir -p "$RUNDIR"
RUNDIR=$(cd "$RUNDIR" && pwd)
CONF="$RUNDIR/peyvand.conf"
if [ ! -f "$CONF" ]; then
	sed -e "s|^data_dir:.*|data_dir: $RUNDIR/data|" \
	    -e "s|^admin_socket:.*|admin_socket: $RUNDIR/data/admin.sock|" \
	    examples/peyvand.conf > "$CONF"
fi
cat <<MSG

  peyvand is starting for the domain "localhost" (config: $CONF)

  Connect any XMPP client to localhost, port 5222 (STARTTLS) or 5223 (direct TLS).
  The certificate is self-signed: accept it in your client.

  Add a user (in another terminal):
      $BUILD/peyvandctl --config $CONF user add alice@localhost
  Then log in as alice@localhost.  Stop the server with Ctrl-C.

MSG
exec "$BUILD/peyvand" --config "$CONF"
