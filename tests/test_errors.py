from dpolib.errors import LIMIT, describe


def test_describe_keeps_short_values_and_cuts_long_ones():
    assert describe("pizza") == "'pizza'"
    long = "x" * 1_000_000
    text = describe(long)
    assert len(text) <= LIMIT + 30
    assert text.startswith("'xxx") and "1000002 characters" in text
