"""Unit tests of the test terminal's own helpers (no gateway needed): run with pytest."""

import pathlib
import re

import iso8583
from iso8583.specs import default_ascii as SPEC

import terminal

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "merchant-link.md"


def doc_frames():
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"^### ([^\n]*)\n```iso8583-hex[^\n]*\n(.*?)^```", text, re.S | re.M)
    return {title: bytes.fromhex("".join(hexes.split())) for title, hexes in blocks}


def test_field48_escaping_matches_the_profile():
    # The same case as the gateway's Rust test: '%', ';' and UTF-8 bytes are escaped.
    assert terminal.format_field48([("PAYER", "José; 100%")]) == "PAYER=Jos%C3%A9%3B 100%25"
    assert terminal.parse_field48("PAYER=Jos%C3%A9%3B 100%25;X=a=b") == {"PAYER": "José; 100%", "X": "a=b"}
    assert terminal.parse_field48("") == {}


def test_sign_on_frame_matches_the_documented_example():
    frames = doc_frames()
    fields = {
        "t": "0800",
        "7": "0314153000",
        "11": "000001",
        "41": "POS00017",
        "42": "M0000042".ljust(15),
        "48": terminal.format_field48([("KEY", "7f3a9c2e41d8b605")]),
        "70": "001",
    }
    assert terminal.encode_frame(fields) == frames["0800 sign-on"]


def test_advice_example_reads_as_an_event():
    frame = doc_frames()["0620 PAIRED"]
    event = terminal.advice_event(terminal.decode_message(frame[2:]))
    assert event["kind"] == "PAIRED"
    assert event["rrn"] == "250314000731"
    assert event["data"]["ATTR.age_over_18"] == "yes"


def test_encode_frame_leaves_the_callers_dict_alone():
    fields = {"t": "0800", "11": "000001", "70": "301"}
    terminal.encode_frame(fields)
    assert fields == {"t": "0800", "11": "000001", "70": "301"}
    doc, _ = iso8583.decode(bytes(terminal.encode_frame(fields)[2:]), SPEC)
    assert doc["1"] != "" and doc["70"] == "301"
