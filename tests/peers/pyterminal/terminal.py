#!/usr/bin/env python3
"""A merchant test terminal for telepay's ISO 8583 link, built on pyiso8583.

It speaks the profile of docs/merchant-link.md with pyiso8583's ``default_ascii`` spec, so it
doubles as an interoperability check: nothing here is shared with the gateway's Rust codec.

Library use::

    t = Terminal.connect("127.0.0.1", 5800)
    t.sign_on("POS00017", "M0000042", "secret")
    opened = t.open_transaction(amount_minor=1250, currency=978)
    advice = t.wait_advice(timeout=30)          # acked with 0630 automatically
    result = t.send_amount(opened["rrn"], 1250, 978)

Command line (JSON lines on stdout, one object per event; commands on stdin)::

    terminal.py --port 5800 --terminal-id POS00017 --merchant-id M0000042 --key secret \
        [--amount 1250 --currency 978] [--amount-on-paired 1250]

Events: ``signed_on``, ``opened``, ``advice``, ``amount_response``, ``reversal_response``,
``echo_response``, ``signed_off``, ``final``, ``error``. Commands (one per line on stdin):
``amount <minor> [currency]``, ``reverse``, ``echo``, ``signoff``, ``quit``. With
``--exit-on-final`` (the default) the terminal signs off and exits 0 after an advice whose event
is final (SETTLED, DECLINED, EXPIRED, CANCELLED, REVERSED). Exit codes: 0 done, 1 error or
timeout, 2 sign-on or open refused.
"""

import argparse
import json
import select
import socket
import sys
import time
import urllib.parse

import iso8583
from iso8583.specs import default_ascii as SPEC

FINAL_EVENTS = {"SETTLED", "DECLINED", "EXPIRED", "CANCELLED", "REVERSED"}
FRAME_SIZE_MAX = 4096


class LinkError(Exception):
    """The link broke or the gateway sent something unusable."""


def encode_frame(fields):
    """Encodes a dict of pyiso8583 fields as a length-prefixed frame."""
    # pyiso8583 removes the bitmap keys from the dict it is given; hand it a copy.
    message, _ = iso8583.encode(dict(fields), SPEC)
    return len(message).to_bytes(2, "big") + bytes(message)


def decode_message(message):
    doc, _ = iso8583.decode(bytes(message), SPEC)
    return doc


def _escape(value):
    # Field 48 values: '%', ';' and anything outside printable ASCII are percent-encoded.
    out = []
    for byte in value.encode("utf-8"):
        if byte < 0x20 or byte > 0x7E or byte in (0x25, 0x3B):
            out.append("%{:02X}".format(byte))
        else:
            out.append(chr(byte))
    return "".join(out)


def format_field48(pairs):
    return ";".join("{}={}".format(k, _escape(v)) for k, v in pairs)


def parse_field48(text):
    pairs = {}
    if not text:
        return pairs
    for pair in text.split(";"):
        key, sep, value = pair.partition("=")
        if not sep:
            raise LinkError("field 48 pair without '='")
        pairs[key] = urllib.parse.unquote(value, errors="strict")
    return pairs


def transmission_time():
    return time.strftime("%m%d%H%M%S", time.gmtime())


class Terminal:
    """One terminal's link. Answers the gateway's echoes and acks its advices as they arrive."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""
        self.stan = 0
        self.terminal_id = None
        self.merchant_id = None
        self.advices = []  # decoded 0620s, acked, waiting for the caller
        self.responses = []  # decoded responses not yet claimed
        self.sent = {}  # STAN -> last request fields, for repeats

    @classmethod
    def connect(cls, host, port, timeout=10.0):
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def close(self):
        self.sock.close()

    # ---- wire ----

    def next_stan(self):
        self.stan = self.stan % 999999 + 1
        return "{:06d}".format(self.stan)

    def send(self, fields):
        self.sock.sendall(encode_frame(fields))

    def _read_frames(self, timeout):
        """Reads what arrives within `timeout` seconds and returns the complete messages."""
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if ready:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise LinkError("connection closed by the gateway")
            self.buffer += chunk
        messages = []
        while len(self.buffer) >= 2:
            length = int.from_bytes(self.buffer[:2], "big")
            if length == 0 or length > FRAME_SIZE_MAX:
                raise LinkError("bad frame length {}".format(length))
            if len(self.buffer) < 2 + length:
                break
            messages.append(decode_message(self.buffer[2 : 2 + length]))
            self.buffer = self.buffer[2 + length :]
        return messages

    def pump(self, timeout):
        """Reads for up to `timeout` seconds, answering echoes and acking advices."""
        for doc in self._read_frames(timeout):
            mti = doc["t"]
            if mti == "0800":
                reply = {"t": "0810", "7": transmission_time(), "11": doc["11"], "39": "00"}
                reply["70"] = doc.get("70", "301")
                self.send(reply)
            elif mti in ("0620", "0621"):
                ack = {"t": "0630", "7": transmission_time(), "11": doc["11"], "39": "00"}
                for f in ("37", "41", "42"):
                    if f in doc:
                        ack[f] = doc[f]
                self.send(ack)
                self.advices.append(doc)
            else:
                self.responses.append(doc)

    def request(self, fields, response_mti, timeout=30.0):
        """Sends a request and waits for the response with its STAN."""
        self.sent[fields["11"]] = dict(fields)
        self.send(fields)
        return self.wait_response(fields["11"], response_mti, timeout)

    def wait_response(self, stan, response_mti, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            for i, doc in enumerate(self.responses):
                if doc["t"] == response_mti and doc.get("11") == stan:
                    return self.responses.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkError("no {} for STAN {} within {} s".format(response_mti, stan, timeout))
            self.pump(min(remaining, 0.5))

    def repeat(self, stan, timeout=30.0):
        """Sends the request with `stan` again as a repeat (0101/0201/0401)."""
        fields = dict(self.sent[stan])
        fields["t"] = fields["t"][:3] + "1"
        fields["7"] = transmission_time()
        self.send(fields)
        return self.wait_response(stan, fields["t"][:2] + "10", timeout)

    # ---- profile ----

    def _ids(self):
        return {"41": self.terminal_id.ljust(8), "42": self.merchant_id.ljust(15)}

    def sign_on(self, terminal_id, merchant_id, key, timeout=30.0):
        self.terminal_id = terminal_id
        self.merchant_id = merchant_id
        fields = {"t": "0800", "7": transmission_time(), "11": self.next_stan(), "70": "001"}
        fields.update(self._ids())
        fields["48"] = format_field48([("KEY", key)])
        doc = self.request(fields, "0810", timeout)
        return {"code": doc.get("39"), "stan": doc.get("11")}

    def sign_off(self, timeout=30.0):
        fields = {"t": "0800", "7": transmission_time(), "11": self.next_stan(), "70": "002"}
        fields.update(self._ids())
        doc = self.request(fields, "0810", timeout)
        return {"code": doc.get("39")}

    def echo(self, timeout=30.0):
        fields = {"t": "0800", "7": transmission_time(), "11": self.next_stan(), "70": "301"}
        doc = self.request(fields, "0810", timeout)
        return {"code": doc.get("39")}

    def open_transaction(self, amount_minor=None, currency=None, timeout=30.0, stan=None):
        fields = {"t": "0100", "3": "000000", "7": transmission_time()}
        fields["11"] = stan or self.next_stan()
        if amount_minor is not None:
            fields["4"] = "{:012d}".format(amount_minor)
            fields["49"] = "{:03d}".format(currency)
        fields.update(self._ids())
        doc = self.request(fields, "0110", timeout)
        return self._open_result(doc)

    @staticmethod
    def _open_result(doc):
        extra = parse_field48(doc.get("48", ""))
        return {
            "code": doc.get("39"),
            "stan": doc.get("11"),
            "rrn": doc.get("37"),
            "txn": extra.get("TXN"),
            "exp": int(extra["EXP"]) if "EXP" in extra else None,
        }

    def send_amount(self, rrn, amount_minor, currency, timeout=150.0):
        fields = {
            "t": "0200",
            "3": "000000",
            "4": "{:012d}".format(amount_minor),
            "7": transmission_time(),
            "11": self.next_stan(),
            "37": rrn,
            "49": "{:03d}".format(currency),
        }
        fields.update(self._ids())
        doc = self.request(fields, "0210", timeout)
        return self._amount_result(doc)

    @staticmethod
    def _amount_result(doc):
        return {"code": doc.get("39"), "stan": doc.get("11"), "auth": doc.get("38"), "rrn": doc.get("37")}

    def reverse(self, rrn, original_mti="0200", original_stan="000000", timeout=30.0):
        fields = {"t": "0400", "7": transmission_time(), "11": self.next_stan(), "37": rrn}
        fields.update(self._ids())
        fields["90"] = original_mti + original_stan + "0" * 32
        doc = self.request(fields, "0410", timeout)
        return {"code": doc.get("39"), "stan": doc.get("11")}

    def wait_advice(self, timeout=30.0):
        """The next advice (already acked), decoded, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.advices:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.pump(min(remaining, 0.5))
        return advice_event(self.advices.pop(0))


def advice_event(doc):
    extra = parse_field48(doc.get("48", ""))
    event = {
        "event": "advice",
        "stan": doc.get("11"),
        "rrn": doc.get("37"),
        "kind": extra.get("EVENT"),
        "data": extra,
    }
    if "4" in doc:
        event["amount"] = int(doc["4"])
        event["currency"] = int(doc.get("49", "0"))
    return event


# ---- command line ----


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def run(args):
    terminal = Terminal.connect(args.host, args.port, timeout=args.timeout)
    deadline = time.monotonic() + args.timeout
    result = terminal.sign_on(args.terminal_id, args.merchant_id, args.key)
    emit(dict(event="signed_on", **result))
    if result["code"] != "00":
        return 2
    opened = terminal.open_transaction(args.amount, args.currency)
    emit(dict(event="opened", **opened))
    if opened["code"] != "00":
        return 2
    rrn = opened["rrn"]
    pending = {}  # STAN -> kind of the request whose answer is awaited
    stdin_open = not args.no_stdin

    def send_amount(minor, currency):
        fields = {
            "t": "0200",
            "3": "000000",
            "4": "{:012d}".format(minor),
            "7": transmission_time(),
            "11": terminal.next_stan(),
            "37": rrn,
            "49": "{:03d}".format(currency),
        }
        fields.update(terminal._ids())
        terminal.sent[fields["11"]] = dict(fields)
        terminal.send(fields)
        pending[fields["11"]] = "amount_response"

    while time.monotonic() < deadline:
        watched = [terminal.sock] + ([sys.stdin] if stdin_open else [])
        ready, _, _ = select.select(watched, [], [], min(1.0, max(0, deadline - time.monotonic())))
        if sys.stdin in ready:
            line = sys.stdin.readline()
            if not line:
                stdin_open = False
                continue
            words = line.split()
            if not words:
                continue
            if words[0] == "amount" and len(words) >= 2:
                currency = int(words[2]) if len(words) > 2 else args.currency
                send_amount(int(words[1]), currency)
            elif words[0] == "reverse":
                fields = {"t": "0400", "7": transmission_time(), "11": terminal.next_stan(), "37": rrn}
                fields.update(terminal._ids())
                fields["90"] = "0200" + "000000" + "0" * 32
                terminal.send(fields)
                pending[fields["11"]] = "reversal_response"
            elif words[0] == "echo":
                fields = {"t": "0800", "7": transmission_time(), "11": terminal.next_stan(), "70": "301"}
                terminal.send(fields)
                pending[fields["11"]] = "echo_response"
            elif words[0] == "signoff":
                emit(dict(event="signed_off", **terminal.sign_off()))
            elif words[0] == "quit":
                return 0
            else:
                emit({"event": "error", "message": "unknown command: " + line.strip()})
        if terminal.sock in ready or terminal.buffer:
            terminal.pump(0)
        while terminal.responses:
            doc = terminal.responses.pop(0)
            kind = pending.pop(doc.get("11"), "response")
            emit({"event": kind, "mti": doc["t"], "stan": doc.get("11"), "code": doc.get("39"), "auth": doc.get("38")})
        while terminal.advices:
            event = advice_event(terminal.advices.pop(0))
            emit(event)
            if event["kind"] == "PAIRED" and args.amount_on_paired is not None:
                send_amount(args.amount_on_paired, args.currency)
            if event["kind"] in FINAL_EVENTS and args.exit_on_final:
                emit({"event": "final", "result": event["kind"], "rrn": event["rrn"]})
                emit(dict(event="signed_off", **terminal.sign_off()))
                return 0
    emit({"event": "error", "message": "timeout"})
    return 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5800)
    parser.add_argument("--terminal-id", required=True)
    parser.add_argument("--merchant-id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--amount", type=int, help="amount in minor units, sent with the open")
    parser.add_argument("--currency", type=int, default=978, help="ISO 4217 numeric (default 978)")
    parser.add_argument("--amount-on-paired", type=int, help="send this amount when PAIRED arrives")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument("--no-exit-on-final", dest="exit_on_final", action="store_false")
    parser.add_argument("--no-stdin", action="store_true", help="do not read commands from stdin")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (LinkError, OSError, iso8583.DecodeError, iso8583.EncodeError) as error:
        emit({"event": "error", "message": str(error)})
        return 1


if __name__ == "__main__":
    sys.exit(main())
