import pytest

from dpolib.errors import LIMIT, describe
from dpolib.logprobs import build_batch
from dpolib.model import GPTConfig
from dpolib.tokenizer import CharTokenizer


def test_describe_keeps_short_values_and_cuts_long_ones():
    assert describe("pizza") == "'pizza'"
    long = "x" * 1_000_000
    text = describe(long)
    assert len(text) <= LIMIT + 30
    assert text.startswith("'xxx") and "1000002 characters" in text


def test_describe_survives_a_failing_repr():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    assert describe(Broken()) == "<Broken object (repr failed: RuntimeError)>"


def test_messages_from_every_entry_point_are_short():
    # the 1,000,180-character message of the hostile test came from one bad character
    tok = CharTokenizer(tuple("ab"))
    huge = "a" * 1_000_000
    cases = [
        lambda: tok.encode(huge + "!"),
        lambda: build_batch(tok, huge, ["a"]),
        lambda: GPTConfig(vocab_size=huge),
        lambda: tok.decode([huge]),
        lambda: CharTokenizer.from_dict({"kind": huge}),
        lambda: build_batch(tok, [huge], [1]),
    ]
    for case in cases:
        with pytest.raises((TypeError, ValueError)) as err:
            case()
        assert len(str(err.value)) < 1000, str(err.value)[:300]
