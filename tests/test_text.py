from whichvoice.text import counted, none_of


def test_counted_is_singular_for_one_only():
    assert counted(1, "clip") == "1 clip"
    assert counted(0, "clip") == "0 clips"
    assert counted(3, "voice") == "3 voices"
    assert counted(2, "person", "people") == "2 people"
    assert counted(1, "person", "people") == "1 person"


def test_none_of_never_says_none_of_the_1():
    assert none_of(1, "file") == "not the one file"
    assert none_of(4, "file") == "none of the 4 files"
