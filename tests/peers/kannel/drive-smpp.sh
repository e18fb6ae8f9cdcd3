#!/bin/sh
# Runs Kannel's SMPP test SMSC (`drive_smpp`, Debian package kannel-extras) on loopback, for an
# ESME under test. See README.md in this folder for what it does and does not do.
#
#   drive-smpp.sh PORT MESSAGES LOGFILE
#
# Listens for ESMEs on 127.0.0.1:PORT (it binds all interfaces). Once an ESME has bound as a
# receiver, it sends MESSAGES deliver_sm (texts "1", "2", …), each followed by an enquire_link.
# It answers bind_transmitter, bind_receiver, submit_sm, enquire_link and unbind. It exits by
# itself when an ESME connection closes. Runs in the foreground; the caller waits for the port
# to listen before connecting (poll it), and kills this script's process group to stop early.
#
# drive_smpp also connects to a bearerbox's smsbox port (127.0.0.1:13001, not configurable) a
# second after its first ESME connects, and panics if nothing listens there. A placeholder
# listener that accepts and ignores that connection is started here. Port 13001 must be free.
set -eu

PORT=${1:?usage: drive-smpp.sh PORT MESSAGES LOGFILE}
MESSAGES=${2:?usage: drive-smpp.sh PORT MESSAGES LOGFILE}
LOG=${3:?usage: drive-smpp.sh PORT MESSAGES LOGFILE}
DRIVE=${DRIVE_SMPP:-/usr/lib/kannel/test/drive_smpp}
SMSBOX_PORT=13001

if [ ! -x "$DRIVE" ]; then
    echo "drive-smpp.sh: $DRIVE not found; install the Debian package kannel-extras" >&2
    exit 2
fi

READY=$(mktemp)
rm -f "$READY"
python3 - "$SMSBOX_PORT" "$READY" <<'PY' &
# Placeholder smsbox: accept drive_smpp's connection and keep it open, reading and ignoring.
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4)
open(sys.argv[2], "w").close()
s.settimeout(600)
try:
    conn, _ = s.accept()
    while conn.recv(4096):
        pass
except (socket.timeout, OSError):
    pass
PY
BOX=$!
trap 'kill $BOX 2>/dev/null || true; rm -f "$READY"' EXIT INT TERM
# drive_smpp tries the smsbox port once a second after its first ESME, then once more: the
# placeholder must be listening before then.
i=0
while [ ! -e "$READY" ]; do
    i=$((i + 1))
    if [ "$i" -gt 100 ]; then
        echo "drive-smpp.sh: the placeholder smsbox did not start (is port $SMSBOX_PORT free?)" >&2
        exit 2
    fi
    sleep 0.1
done

# -v 0 logs every PDU at debug level: the log is the record of what the ESME sent.
"$DRIVE" -v 0 -p "$PORT" -m "$MESSAGES" >"$LOG" 2>&1
