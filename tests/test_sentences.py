from pathlib import Path

import pytest

from whichvoice.errors import SentencesError
from whichvoice.sentences import bundled_sentences, load_sentences, parse_sentences, sentence_id


def test_bundled_corpus_is_large_distinct_and_short() -> None:
    sentences = bundled_sentences()
    assert len(sentences) >= 1000
    texts = [s.text for s in sentences]
    assert len(set(texts)) == len(texts)
    assert len({s.id for s in sentences}) == len(sentences)
    for text in texts:
        assert 3 <= len(text.split()) <= 20, text
        assert text[-1] in ".?!", text


def test_ids_come_from_the_text() -> None:
    assert sentence_id("Hello there.") == sentence_id("Hello there.")
    assert sentence_id("Hello there.") != sentence_id("Hello there!")
    # pinned: every corpus's manifest, resume and split keys on it (a review's mutant that
    # changed every id passed)
    assert sentence_id("Hello there.") == "s95e3ac5665"  # "s" + SHA-1's first 10 hex digits


def test_a_sentence_of_the_most_characters_is_kept() -> None:
    from whichvoice.sentences import MAX_CHARS, parse_sentences

    assert len(parse_sentences("a" * MAX_CHARS).sentences) == 1
    over = parse_sentences("a" * (MAX_CHARS + 1))
    assert over.sentences == [] and over.too_long == 1


def test_count_takes_the_first_bundled_sentences() -> None:
    assert load_sentences(5).sentences == bundled_sentences()[:5]
    assert load_sentences("7").sentences == bundled_sentences()[:7]
    assert load_sentences(5).skipped == 0


def test_a_line_with_nothing_to_speak_is_blank() -> None:
    """A line of a zero-width space or of punctuation alone was a sentence every engine
    failed on (14 failures in a review's corpus); over HTTP it is refused."""
    source = parse_sentences("Hello there.\n\u200b\n...\n\u200b\u200d\nA 2nd one.\n")
    assert [x.text for x in source.sentences] == ["Hello there.", "A 2nd one."]
    assert source.blank == 3


def test_an_empty_spec_is_said_as_such() -> None:
    """`--sentences ""` read the current folder (Path("") is ".") and said "cannot read"."""
    for empty in ("", "  "):
        with pytest.raises(SentencesError, match="--sentences is empty"):
            load_sentences(empty)


def test_count_keeps_to_max_chars() -> None:
    short = load_sentences(3, max_chars=40)
    assert len(short.sentences) == 3 and all(len(s.text) <= 40 for s in short.sentences)
    assert short.too_long > 0  # the bundled sentences passed over
    with pytest.raises(SentencesError, match="of at most 5 characters"):
        load_sentences(1, max_chars=5)


@pytest.mark.parametrize("n", [0, 100_000])
def test_count_out_of_range_is_a_clear_error(n: int) -> None:
    with pytest.raises(SentencesError, match="sentences"):
        load_sentences(n)


def test_blank_long_and_repeated_lines_are_skipped_and_counted() -> None:
    text = "One line here.\n\n   \nOne line here.\n" + "x" * 400 + "\nAnother   line.\n"
    source = parse_sentences(text, max_chars=300)
    assert [s.text for s in source.sentences] == ["One line here.", "Another line."]
    assert (source.blank, source.too_long, source.duplicate) == (2, 1, 1)
    assert source.skipped == 4


def test_latin1_and_utf8_files(tmp_path: Path) -> None:
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Un caf\xe9 cr\xe8me, s'il vous pla\xeet.\n".encode("latin-1"))
    utf8 = tmp_path / "utf8.txt"
    utf8.write_text("Un café crème, s'il vous plaît.\n", encoding="utf-8")
    assert load_sentences(latin).sentences == load_sentences(utf8).sentences
    assert load_sentences(utf8).sentences[0].text == "Un café crème, s'il vous plaît."


def test_a_utf8_file_with_a_stray_byte_is_read_line_by_line(tmp_path: Path, caplog) -> None:
    """One byte that is not UTF-8 made the whole file Latin-1: 'Café' became 'CafÃ©' in every
    line, spoken and stored without a word (review)."""
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes(b"Caf\xc3\xa9 is open today.\nA stray byte \xff here.\nNa\xc3\xafve.\n")
    with caplog.at_level("WARNING", logger="whichvoice.sentences"):
        texts = [s.text for s in load_sentences(mixed).sentences]
    assert texts == ["Café is open today.", "A stray byte \xff here.", "Naïve."]
    assert "UTF-8 but for 1 line(s) (2), read as Windows-1252 (Latin-1)" in caplog.text


def test_empty_or_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    with pytest.raises(SentencesError, match="no usable sentence"):
        load_sentences(empty)
    with pytest.raises(SentencesError, match=r"missing\.txt"):
        load_sentences(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xff\xf3\x88\xc4\x00\x00\x00\x00 an mp3 frame\n", "NUL bytes"),
        (b"one line\x00\nanother\n", "NUL bytes"),
        ("Hello there.\n".encode("utf-16"), "UTF-16"),
        (bytes(range(1, 256)) * 4, "control byte"),  # binary without a NUL byte
    ],
)
def test_a_file_that_is_not_text_is_refused(tmp_path: Path, raw: bytes, why: str) -> None:
    path = tmp_path / "some.mp3"
    path.write_bytes(raw)
    with pytest.raises(SentencesError, match=f"some.mp3: not a text file .*{why}") as e:
        load_sentences(path)
    assert "\n" not in str(e.value)


def test_latin1_with_a_dos_end_of_file_is_text(tmp_path: Path) -> None:
    path = tmp_path / "old.txt"
    path.write_bytes("Un café.\r\nDeux crèmes.\r\n".encode("latin-1") + b"\x1a")
    assert [s.text for s in load_sentences(path).sentences] == ["Un café.", "Deux crèmes."]


def test_control_characters_are_spaces_and_a_line_of_them_is_blank() -> None:
    source = parse_sentences("Hello\x1b[0m there.\n\x07\x07\x7f\nTab\tand  space.\n")
    assert [s.text for s in source.sentences] == ["Hello [0m there.", "Tab and space."]
    assert source.blank == 1
    assert source.sentences[1].id == sentence_id("Tab and space.")


def test_one_sentence_typed_in_either_unicode_form_is_one_sentence() -> None:
    """Composed and decomposed "Zoë ... café" had two ids, two clips, and could fall on both
    sides of a split (a review)."""
    import unicodedata

    text = "Zoë ate crème brûlée at the café."
    both = parse_sentences(f"{text}\n{unicodedata.normalize('NFD', text)}\n")
    assert [s.text for s in both.sentences] == [unicodedata.normalize("NFC", text)]
    assert both.duplicate == 1


def test_a_windows_1252_file_keeps_its_lines_and_typography(tmp_path: Path) -> None:
    """Byte 0x85 ("…" in Windows-1252) read as Latin-1's NEL split the line in two
    (str.splitlines), and 0x93/0x94 (curly quotes) reached the engine as control
    characters (a review)."""
    path = tmp_path / "s.txt"
    path.write_bytes(b"Wait\x85 what happened here, said Ren\xe9.\r\nIt is a \x93good\x94 film.\n")
    got = [s.text for s in load_sentences(str(path)).sentences]
    assert got == ["Wait… what happened here, said René.", "It is a “good” film."]
    # C1 control characters another way in (a str handed to parse_sentences) are spaces;
    # the other line ends str.splitlines knows still end a line, as before
    assert [s.text for s in parse_sentences("a\x85b\u2028c\fd\n").sentences] == ["a b", "c", "d"]
    # a byte Windows-1252 leaves undefined keeps the rest of its line Windows-1252's
    path.write_bytes(b"\x93Quoted\x94 text \x81 here.\n")
    assert [s.text for s in load_sentences(str(path)).sentences] == ["“Quoted” text here."]
