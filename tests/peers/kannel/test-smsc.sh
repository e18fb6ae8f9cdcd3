#!/bin/sh
# Runs Kannel's round-trip benchmark SMSC (`test_smsc`, Debian package kannel-extras). See
# README.md in this folder.
#
#   test-smsc.sh MESSAGES LOGFILE
#
# Listens for ESMEs on port 2345 and serves HTTP on port 8080 (both fixed in the program). Once an
# ESME has bound as a receiver it sends MESSAGES deliver_sm (at most 1000 unanswered at a time)
# and acknowledges each submit_sm with submit_sm_resp; after MESSAGES submits it asks a Kannel
# admin port (localhost:13000) to shut down, logs an error when nothing answers there, and exits.
# bind_transceiver is not answered: an ESME needs a receiver bind and a transmitter bind.
set -eu

MESSAGES=${1:?usage: test-smsc.sh MESSAGES LOGFILE}
LOG=${2:?usage: test-smsc.sh MESSAGES LOGFILE}
TEST_SMSC=${TEST_SMSC:-/usr/lib/kannel/test/test_smsc}

if [ ! -x "$TEST_SMSC" ]; then
    echo "test-smsc.sh: $TEST_SMSC not found; install the Debian package kannel-extras" >&2
    exit 2
fi

# -m selects the benchmark; without it the program does nothing at all.
exec "$TEST_SMSC" -m n_messages -r "$MESSAGES" >"$LOG" 2>&1
