"""Sentences to synthesize: the bundled corpus or any text file with one sentence per line."""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from whichvoice.errors import SentencesError

log = logging.getLogger(__name__)

MAX_CHARS = 300  # characters; longer lines are skipped (the talk used short sentences)


@dataclass(frozen=True)
class Sentence:
    """One sentence; ``id`` comes from the text itself, so it is stable across files and runs."""

    id: str
    text: str


@dataclass(frozen=True)
class SentenceSource:
    """Sentences read from a source, and how many lines were skipped and why."""

    sentences: list[Sentence]
    blank: int = 0
    too_long: int = 0
    duplicate: int = 0

    @property
    def skipped(self) -> int:
        return self.blank + self.too_long + self.duplicate


def sentence_id(text: str) -> str:
    """A short stable id for a sentence: ``s`` + 10 hex digits of its SHA-1."""
    return "s" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def _decode(raw: bytes, name: str) -> str:
    """The text of a sentence file: UTF-8 (a BOM is dropped), else Latin-1.

    Raises SentencesError for a file that is not text: one with NUL bytes (binary, or UTF-16),
    or one that is not UTF-8 and, read as Latin-1, holds control characters no text has.
    """
    not_text = f"{name}: not a text file ({{}}); --sentences takes UTF-8 or Latin-1 text"
    if b"\0" in raw:
        why = "UTF-16 or UTF-32: save it as UTF-8" if raw[:2] in _WIDE_BOMS else "NUL bytes"
        raise SentencesError(not_text.format(why))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # line by line: UTF-8 where a line is, else Latin-1, which decodes any byte string (the
    # talk's rotten_imdb files are Latin-1); a UTF-8 file with one stray byte was read whole
    # as Latin-1, each of its accented letters two wrong ones (review)
    lines, latin = [], []
    for n, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").splitlines(keepends=True), 1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(_latin(line))
            latin.append(n)
    text = "".join(lines)
    taken = set(latin)
    utf8_letters = any(not line.isascii() for i, line in enumerate(lines, 1) if i not in taken)
    if utf8_letters:  # both encodings in one file: say which lines were taken as Latin-1
        shown = ", ".join(map(str, latin[:5])) + (", ..." if len(latin) > 5 else "")
        log.warning(
            "%s: UTF-8 but for %d line(s) (%s), read as Windows-1252 (Latin-1)",
            name,
            len(latin),
            shown,
        )
    control = next((c for c in text if _is_control(c) and not c.isspace() and c != "\x1a"), None)
    if control is not None:  # binary (an mp3, an image); ^Z may end an old DOS file
        raise SentencesError(not_text.format(f"control byte {ord(control):#04x}"))
    return text


_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-16 and UTF-32, either byte order


def _latin(line: bytes) -> str:
    """A line that is not UTF-8, as Windows-1252 (Latin-1 whose bytes 0x80-0x9f are "…",
    curly quotes, dashes, as most "Latin-1" files mean them); the five bytes it leaves
    undefined as Latin-1's (C1 controls, spoken as spaces), so that one of them does not
    send the whole line back to Latin-1."""
    return line.decode("cp1252", errors="whichvoice-latin-1")


def _as_latin_1(e: UnicodeError) -> tuple[str, int]:
    if not isinstance(e, UnicodeDecodeError):
        raise e
    return e.object[e.start : e.end].decode("latin-1"), e.end


codecs.register_error("whichvoice-latin-1", _as_latin_1)


def _is_control(c: str) -> bool:
    return c < " " or c == "\x7f"


def _spoken_as_space(c: str) -> bool:
    """A control character (C0, DEL or C1), which an engine would be handed as is."""
    return _is_control(c) or "\x80" <= c <= "\x9f"


# where str.splitlines ends a line, but NEL (0x85: Windows-1252's "…" read as Latin-1)
_LINE_END = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\u2028\u2029]")


def parse_sentences(text: str, max_chars: int = MAX_CHARS) -> SentenceSource:
    """One sentence per line; blank, over-long and repeated lines are skipped and counted (a
    line without a letter or digit, nothing to speak, counts as blank).

    Runs of white space and control characters become one space (a control character is
    spoken as a space), so a line of control characters only is blank. Lines end where
    str.splitlines ends them, but at NEL (0x85, a Latin-1 file's "…"); a sentence is taken
    in Unicode's composed form (NFC), so that one typed in either form has one id and is
    one sentence."""
    seen: set[str] = set()
    out: list[Sentence] = []
    blank = too_long = duplicate = 0
    lines = _LINE_END.split(text)
    if lines[-1] == "":  # the end of the last line, not a line
        lines.pop()
    for line in lines:
        s = " ".join("".join(" " if _spoken_as_space(c) else c for c in line).split())
        s = unicodedata.normalize("NFC", s)
        if not any(c.isalnum() for c in s):  # nothing to speak (a zero-width space, "..."):
            blank += 1  # every engine failed on it, and over HTTP it is refused
        elif len(s) > max_chars:
            too_long += 1
        elif s in seen:
            duplicate += 1
        else:
            seen.add(s)
            out.append(Sentence(sentence_id(s), s))
    return SentenceSource(out, blank, too_long, duplicate)


def bundled_sentences() -> list[Sentence]:
    """The corpus shipped with whichvoice (written for the project; see the README)."""
    text = resources.files("whichvoice").joinpath("data/sentences.txt").read_text("utf-8")
    return parse_sentences(text).sentences


def load_sentences(spec: str | int | os.PathLike, max_chars: int = MAX_CHARS) -> SentenceSource:
    """Sentences for ``--sentences``: a count N (the first N bundled ones of at most
    ``max_chars`` characters) or a text file.

    Raises SentencesError when the count is out of range or the file has no usable line.
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().lstrip("-").isdigit()):
        n = int(spec)
        every = bundled_sentences()
        bundled = [s for s in every if len(s.text) <= max_chars]
        if n < 1:
            raise SentencesError(f"--sentences must be at least 1 (got {n})")
        if n > len(bundled):
            short = "" if len(bundled) == len(every) else f" of at most {max_chars} characters"
            raise SentencesError(
                f"only {len(bundled)} bundled sentences{short}; give a text file for more (got {n})"
            )
        return SentenceSource(bundled[:n], too_long=len(every) - len(bundled))
    if not os.fspath(spec).strip():  # Path("") is "." (it was ".: cannot read sentences")
        raise SentencesError("--sentences is empty: give a count N or a text file")
    path = Path(spec)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SentencesError(f"{path}: cannot read sentences ({e.strerror or e})") from e
    source = parse_sentences(_decode(raw, str(path)), max_chars)
    if not source.sentences:
        raise SentencesError(
            f"{path}: no usable sentence ({source.blank} blank, {source.too_long} over "
            f"{max_chars} characters)"
        )
    return source
