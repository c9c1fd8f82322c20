"""How ingest reads a multipart/form-data body (`ingest._MultipartForm`, on werkzeug's
incremental decoder): the same file bytes and fields whatever the sizes of the reads, never
more than a read in memory, and the grammar ingest has always accepted (it used
streaming-form-data before: its behaviour is kept, its bugs are not)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from call_downloader.http.errors import ApiError
from call_downloader.pipeline import ingest
from call_downloader.pipeline.ingest import MAX_PART_HEADER_BYTES, READ_BYTES, _MultipartForm

BOUNDARY = b"XyZ"
END = b"--XyZ--\r\n"
# Audio-like bytes with every byte value, CRs and LFs, and near-delimiters that are data: a
# boundary not after CRLF, after a bare LF, followed by `-x`, by CR x, by white space.
AUDIO = (
    bytes(range(256)) * 3
    + b"\r\n-\r\n--X\r\n--XyZ-x\r\n--XyZ\rx\r\n--XyZ \r\n\n--XyZ\r\n--XyZ\r\r"
    + bytes(range(255, -1, -1)) * 2
)


def part(name: str, value: bytes, filename: str | None = None, headers: bytes = b"") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--XyZ\r\nContent-Disposition: {disposition}\r\n".encode() + headers + b"\r\n"
    return head + value + b"\r\n"


def read(pieces: list[bytes]) -> tuple[_MultipartForm, bytes, list[int]]:
    """The form read from `pieces` (one read each), the file's bytes and the size of each
    write of them."""
    written: list[bytes] = []
    form = _MultipartForm(BOUNDARY, written.append)
    for piece in pieces:
        form.feed(piece)
    form.close()
    return form, b"".join(written), [len(w) for w in written]


def refusal(pieces: list[bytes]) -> tuple[int, str]:
    with pytest.raises(ApiError) as refused:
        read(pieces)
    return refused.value.status, refused.value.code


def in_pieces(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def every_cut(body: bytes) -> Iterator[list[bytes]]:
    for i in range(1, len(body)):
        yield [body[:i], body[i:]]


FULL = (
    part("external_id", b"ext-1")
    + part("file", AUDIO, "a.wav", b"Content-Type: audio/wav\r\n")
    + part("metadata", b'{"a": 1}')
    + END
)


def assert_full(form: _MultipartForm, audio: bytes) -> None:
    assert audio == AUDIO
    assert form.ended and form.file.seen and form.file.complete
    assert form.file.filename == "a.wav" and form.file.content_type == "audio/wav"
    assert bytes(form.external_id.value) == b"ext-1"
    assert bytes(form.metadata.value) == b'{"a": 1}'


@pytest.mark.parametrize("size", [1, 2, 3, 7, 13, 64, 1000, len(FULL)])
def test_reads_of_any_size_give_the_same_form(size):
    form, audio, _ = read(in_pieces(FULL, size))
    assert_full(form, audio)


def test_a_read_may_end_anywhere():
    for pieces in every_cut(FULL):
        form, audio, _ = read(pieces)
        assert_full(form, audio)


@pytest.mark.parametrize(
    "closing",
    [END, b"--XyZ\r\n" + part("x", b"y")[len(b"--XyZ\r\n") :] + END],
    ids=["closing boundary", "delimiter"],
)
def test_a_read_ending_one_byte_into_a_delimiter_adds_nothing_to_the_part(closing):
    """werkzeug 3.1.9's decoder releases the CR of `CRLF--boundary-` (or `CRLF--boundary`
    CR) as the part's data when its buffer ends there (pallets/werkzeug#3285); a strict
    delimiter would then be missed altogether."""
    file_part = part("file", AUDIO, "a.wav")
    body = file_part + closing
    cut = len(file_part) - 2 + len(b"\r\n--XyZ") + 1  # after the `-` or the CR
    assert body[cut - 1 : cut] in (b"-", b"\r")
    for pieces in ([body[:cut], body[cut:]], [body[: cut - 1], body[cut - 1 : cut], body[cut:]]):
        form, audio, _ = read(pieces)
        assert audio == AUDIO
        assert form.ended and form.file.complete


def test_the_file_streams_through_and_nothing_grows():
    """Each read's file bytes are written before the next read; the decoder holds no more
    than a read whatever the size of the file or of a skipped part."""
    big = bytes(range(256)) * (4 * READ_BYTES // 256)  # four reads' worth
    body = part("other", big, "x.bin") + part("file", big, "a.wav") + END
    written: list[bytes] = []
    form = _MultipartForm(BOUNDARY, written.append)
    seen_before: list[int] = []
    for piece in in_pieces(body, READ_BYTES):
        seen_before.append(sum(map(len, written)))
        form.feed(piece)
        assert len(form._decoder.buffer) <= READ_BYTES
    for _ in range(4):  # an epilogue is read and dropped
        form.feed(b"e" * READ_BYTES)
        assert len(form._decoder.buffer) <= READ_BYTES
    form.close()
    assert b"".join(written) == big and form.ended
    file_reads = [n for n in seen_before if n]
    assert len(file_reads) >= 3  # written while later reads were still to come
    assert max(map(len, written)) <= READ_BYTES + len(BOUNDARY) + 6


def test_crlfs_before_the_first_boundary_and_anything_after_the_last_are_ignored():
    body = b"\r\n\r\n" + part("file", AUDIO, "a.wav") + END + b"epilogue\r\n--XyZ\r\nmore"
    for pieces in ([body], in_pieces(body, 5)):
        form, audio, _ = read(pieces)
        assert audio == AUDIO and form.ended


@pytest.mark.parametrize(
    "body",
    [
        b"preamble\r\n" + part("file", AUDIO, "a.wav") + END,
        b"\n" + part("file", AUDIO, "a.wav") + END,
        b"\r\r\n" + part("file", AUDIO, "a.wav") + END,
        part("file", AUDIO, "a.wav").replace(b"--XyZ", b"--Other", 1) + END,
        b"--XyZx\r\n" + part("file", AUDIO, "a.wav") + END,
        b"--XyZ\n" + part("file", AUDIO, "a.wav")[7:] + END,
    ],
    ids=["preamble", "bare LF first", "CR CR LF first", "other boundary", "longer", "bare LF"],
)
def test_a_body_must_begin_with_its_boundary(body):
    for pieces in ([body], in_pieces(body, 1)):
        assert refusal(pieces) == (400, "malformed_multipart")


@pytest.mark.parametrize(
    "body",
    [b"", b"\r\n", b"--Xy", b"--XyZ--\r\n", b"--XyZ--"],
    ids=["empty", "a CRLF", "cut in the boundary", "empty form", "empty form, no CRLF"],
)
def test_an_empty_body_or_form_has_no_file(body):
    form, _, _ = read([body])
    assert not form.file.seen


def test_a_body_cut_short_has_not_ended():
    body = part("file", AUDIO, "a.wav") + part("external_id", b"ext-1") + END
    for cut_body in (
        body[: len(body) - len(END) - 4],  # inside the last part
        body[: len(body) - len(END) + 4],  # inside the closing boundary
        body[: len(body) - len(END)] + b"--XyZ\r\n",  # a delimiter, no closing boundary
    ):
        form, audio, _ = read([cut_body])
        assert form.file.complete and audio == AUDIO
        assert not form.ended
    form, _, _ = read([body[: len(AUDIO) // 2]])
    assert form.file.seen and not form.file.complete


def test_parts_are_found_by_their_exact_name_and_others_skipped():
    body = (
        part("File", b"x", "a.wav")
        + part("audio", b"x", "a.wav")
        + part("external_id ", b"x")
        + b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nno name\r\n"
        + b"--XyZ\r\nX-Other: no disposition\r\n\r\nskipped\r\n"
        + part("file", AUDIO)  # no filename: still the file
        + END
    )
    form, audio, _ = read([body])
    assert audio == AUDIO and form.file.filename is None
    assert form.external_id.value == b"" and form.metadata.value == b""


def test_repeated_fields_are_concatenated_within_their_limit():
    body = part("external_id", b"ab") + part("file", AUDIO, "a.wav") + part("external_id", b"cd")
    form, _, _ = read([body + END])
    assert bytes(form.external_id.value) == b"abcd"
    too_long = part("external_id", b"a" * 600) + part("external_id", b"b" * 600)
    assert refusal([too_long + part("file", AUDIO, "a.wav") + END]) == (413, "field_too_large")
    assert refusal([part("metadata", b"x" * 70_000) + END]) == (413, "field_too_large")


def test_a_second_file_part_is_422():
    body = part("file", AUDIO, "a.wav") + part("file", AUDIO, "b.wav") + END
    assert refusal([body]) == (422, "invalid_field")


@pytest.mark.parametrize(
    ("headers", "filename", "content_type"),
    [
        (b"Content-Type: AUDIO/Wav; rate=8000\r\n", "a.wav", "audio/wav"),
        (b"Content-Type: wav\r\n", "a.wav", "text/plain"),  # not a media type (RFC 2045)
        (b"Content-Type: text/html\r\nContent-Type: audio/mpeg\r\n", "a.wav", "audio/mpeg"),
        (b"", "a.wav", None),
    ],
)
def test_the_file_part_s_type_as_the_email_package_reads_it(headers, filename, content_type):
    form, _, _ = read([part("file", AUDIO, "a.wav", headers) + END])
    assert (form.file.filename, form.file.content_type) == (filename, content_type)


def test_a_content_type_before_the_disposition_does_not_count():
    body = (
        b"--XyZ\r\nContent-Type: audio/wav\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        + AUDIO
        + b"\r\n"
        + END
    )
    form, audio, _ = read([body])
    assert audio == AUDIO and form.file.content_type is None


@pytest.mark.parametrize(
    ("disposition", "filename"),
    [
        ("form-data; name=\"file\"; filename*=UTF-8''Zo%C3%AB.wav", "Zoë.wav"),
        ('form-data; name="file"; filename="x.wav"; filename*=UTF-8\'\'y.wav', "x.wav"),
        ('form-data; name="file"; filename="=?utf-8?q?Zo=C3=AB.wav?="', "Zoë.wav"),
        ('form-data; name="file"; filename="a%22b.wav"', "a%22b.wav"),
        ('form-data; name="file"; filename="a\\"b.wav"', 'a"b.wav'),
        ('form-data; name="file"; filename="unterminated', "unterminated"),
        ('Form-Data; NAME=file; FILENAME="a.wav"', "a.wav"),
        ('form-data; name = "file"; filename = "a.wav"', "a.wav"),
        ('form-data; name="file"; name="metadata"; filename="a.wav"', "a.wav"),  # first wins
        ('form-data; name="file"; filename="Zoë.wav"', "Zoë.wav"),  # UTF-8 as browsers send it
    ],
)
def test_unusual_dispositions_are_read_as_they_always_were(disposition, filename):
    head = f"--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
    form, audio, _ = read([head + AUDIO + b"\r\n" + END])
    assert audio == AUDIO and form.file.filename == filename


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (  # only form-data parts
            b'--XyZ\r\nContent-Disposition: attachment; name="file"\r\n\r\nx\r\n' + END,
            400,
            "malformed_multipart",
        ),
        (  # header bytes that are not UTF-8 (streaming-form-data answered 500)
            part("file", AUDIO, "\xe9.wav").replace(b"\xc3\xa9", b"\xe9") + END,
            400,
            "malformed_multipart",
        ),
        (  # headers ended by a bare LF LF would swallow what follows
            b'--XyZ\r\nContent-Disposition: form-data; name="x"\n\n'
            + part("file", AUDIO, "a.wav")
            + END,
            400,
            "malformed_multipart",
        ),
        (  # a bare CR in the headers
            b'--XyZ\r\nContent-Disposition: form-data; name="external_id"\rext\r\n'
            + part("file", AUDIO, "a.wav")
            + END,
            400,
            "malformed_multipart",
        ),
        (
            b"--XyZ\r\nX-Pad: " + b"a" * MAX_PART_HEADER_BYTES + b"\r\n\r\nx\r\n" + END,
            413,
            "part_headers_too_large",
        ),
    ],
    ids=["attachment", "not utf-8", "LF LF", "bare CR", "headers too large"],
)
def test_malformed_parts_are_refused(body, status, code):
    for pieces in ([body], in_pieces(body, 4096), in_pieces(body, 7)):
        assert refusal(pieces) == (status, code)


def test_large_part_headers_within_the_limit_are_read():
    pad = b"X-Pad: " + b"a" * (MAX_PART_HEADER_BYTES - 200) + b"\r\n"
    body = part("file", AUDIO, "a.wav", pad) + END
    for pieces in ([body], in_pieces(body, 1000)):
        form, audio, _ = read(pieces)
        assert audio == AUDIO and form.file.filename == "a.wav"


def test_folded_header_lines_are_unfolded():
    """RFC 5322 folding (obsolete in HTTP): streaming-form-data dropped the continuation
    line, werkzeug joins it."""
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file";\r\n filename="a.wav"\r\n\r\n'
        + AUDIO
        + b"\r\n"
        + END
    )
    form, audio, _ = read([body])
    assert audio == AUDIO and form.file.filename == "a.wav"


class _Request:
    def __init__(self, content_type: str) -> None:
        from werkzeug.http import parse_options_header

        self.content_type = content_type
        self.mimetype_params: dict[str, Any] = parse_options_header(content_type)[1]


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=XyZ", b"XyZ"),
        ('multipart/form-data; boundary="a b:c"', b"a b:c"),
        ("multipart/form-data; charset=utf-8; BOUNDARY=XyZ", b"XyZ"),
        ("multipart/form-data; boundary = XyZ", b"XyZ"),  # read by the email package
        ("multipart/form-data", None),
        ('multipart/form-data; boundary=""', None),
        ('multipart/form-data; boundary="é"', None),
    ],
)
def test_the_boundary_comes_from_the_content_type(content_type, boundary):
    if boundary is None:
        with pytest.raises(ApiError) as refused:
            ingest._boundary(_Request(content_type))  # type: ignore[arg-type]
        assert (refused.value.status, refused.value.code) == (400, "malformed_multipart")
    else:
        assert ingest._boundary(_Request(content_type)) == boundary  # type: ignore[arg-type]
