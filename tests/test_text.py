from whichvoice.text import counted, none_of, spelled, spelled_all


def test_counted_is_singular_for_one_only():
    assert counted(1, "clip") == "1 clip"
    assert counted(0, "clip") == "0 clips"
    assert counted(3, "voice") == "3 voices"
    assert counted(2, "person", "people") == "2 people"
    assert counted(1, "person", "people") == "1 person"


def test_none_of_never_says_none_of_the_1():
    assert none_of(1, "file") == "not the one file"
    assert none_of(4, "file") == "none of the 4 files"


def test_a_name_that_is_not_utf8_is_written_with_its_bytes_spelled():
    """A file name with a Latin-1 byte (kept by Python as a surrogate) made an output row
    unwritable, or lost which byte it was; a dictionary keyed by such a name kept the key as
    it was."""
    name = b"caf\xe9.wav".decode("utf-8", "surrogateescape")
    assert spelled(name) == "caf\\xe9.wav"
    assert spelled("café.wav") == "café.wav"
    assert spelled_all({name: [name, 1]}) == {"caf\\xe9.wav": ["caf\\xe9.wav", 1]}
