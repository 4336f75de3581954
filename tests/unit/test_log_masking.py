"""Secrets a job prints are masked as its log is stored: same length, so
offsets (and so resumption after a crash) stay exact, and a secret split
across two reads from the node is masked whole."""

from __future__ import annotations

from pathlib import Path

from skytui.logs.sync import _append, maskable


def _store(path: Path, chunks: list[bytes], secrets: tuple[bytes, ...]) -> bytes:
    for chunk in chunks:
        _append(path, chunk, secrets)
    return path.read_bytes()


def test_a_secret_is_masked_in_place_whatever_the_chunking(tmp_path: Path) -> None:
    secrets = maskable(["hunter2-canary", "ab"])  # too short to mask: "ab" stays
    assert secrets == (b"hunter2-canary",)
    text = b"pw=hunter2-canary; ab; again hunter2-canary\n"
    expected = b"pw=**************; ab; again **************\n"
    for cut in range(1, len(text)):
        path = tmp_path / f"{cut}.log"
        stored = _store(path, [text[:cut], text[cut:]], secrets)
        assert stored == expected, cut
    # Byte by byte too: every read boundary falls inside the secret at some point.
    assert _store(tmp_path / "bytes.log", [bytes([b]) for b in text], secrets) == expected


def test_the_longest_secret_wins_and_others_stay_byte_exact(tmp_path: Path) -> None:
    secrets = maskable(["token", "token-extended"])
    stored = _store(tmp_path / "x.log", [b"a token-extended b token c\n", b"\x00\xffraw"], secrets)
    assert stored == b"a ************** b ***** c\n\x00\xffraw"
    assert _store(tmp_path / "plain.log", [b"no secrets here\n"], ()) == b"no secrets here\n"
