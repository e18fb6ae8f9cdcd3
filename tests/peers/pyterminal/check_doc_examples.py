#!/usr/bin/env python3
"""Decodes every hex example of docs/merchant-link.md with pyiso8583 and checks it.

For each fenced ``iso8583-hex`` block: the length prefix matches, pyiso8583's ``default_ascii``
decodes the message, its fields equal the field list printed under the block (which the
gateway's own codec produced), and pyiso8583 re-encodes the fields to the same bytes.

Prints one line per example and a closing ``N passed, N failed`` line; exits non-zero on any
failure.
"""

import pathlib
import re
import sys

import iso8583
from iso8583.specs import default_ascii as SPEC

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "merchant-link.md"

BLOCK = re.compile(
    r"^### (?P<title>[^\n]*)\n```iso8583-hex[^\n]*\n(?P<hex>.*?)^```\n(?P<listing>[^\n]*)",
    re.S | re.M,
)
FIELD = re.compile(r"(\d+)=`([^`]*)`")
MTI = re.compile(r"^MTI `(\d{4})`;")


def check(title, hex_text, listing):
    frame = bytes.fromhex("".join(hex_text.split()))
    length = int.from_bytes(frame[:2], "big")
    if length != len(frame) - 2:
        return "length prefix {} but {} bytes follow".format(length, len(frame) - 2)
    message = frame[2:]
    doc, _ = iso8583.decode(message, SPEC)
    mti = MTI.match(listing)
    if not mti:
        return "no field listing under the block"
    expected = {"t": mti.group(1)}
    expected.update(FIELD.findall(listing))
    got = {k: v for k, v in doc.items() if k not in ("p", "1")}
    if got != expected:
        return "fields differ: pyiso8583 {} listing {}".format(got, expected)
    again, _ = iso8583.encode(dict(got), SPEC)
    if bytes(again) != message:
        return "pyiso8583 re-encodes to other bytes"
    return None


def main():
    text = DOC.read_text(encoding="utf-8")
    passed = failed = 0
    for match in BLOCK.finditer(text):
        try:
            error = check(match["title"], match["hex"], match["listing"])
        except (ValueError, iso8583.DecodeError, iso8583.EncodeError) as e:
            error = "{}: {}".format(type(e).__name__, e)
        if error:
            failed += 1
            print("FAIL {}: {}".format(match["title"], error))
        else:
            passed += 1
            print("ok   {}".format(match["title"]))
    if passed + failed == 0:
        print("no examples found in {}".format(DOC))
        return 1
    print("{} passed, {} failed".format(passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
