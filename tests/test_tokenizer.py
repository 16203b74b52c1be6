import pytest

from dpolib.tokenizer import BOS, EOS, PAD, CharTokenizer


def test_roundtrip_and_special_ids(tok):
    ids = tok.encode("ravin likes pizza", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "ravin likes pizza"
    assert tok.decode(ids, skip_special=False) == f"{BOS}ravin likes pizza{EOS}"
    assert {tok.pad_id, tok.bos_id, tok.eos_id} == {0, 1, 2}
    assert tok.vocab_size == 3 + 27


def test_end_marker_is_not_a_character():
    # the original text used the letter "E" as its end marker; ours cannot collide with text
    t = CharTokenizer.from_texts(["EAT Eggs"])
    ids = t.encode("EAT Eggs", eos=True)
    assert ids.count(t.eos_id) == 1
    assert t.decode(ids) == "EAT Eggs"
    assert all(len(s) > 1 for s in (PAD, BOS, EOS))


def test_unknown_character_names_it_and_the_fix(tok):
    with pytest.raises(
        ValueError, match=r"'!' at position 5 .*not in the tokenizer's alphabet"
    ):
        tok.encode("pizza!")


def test_bad_alphabets():
    with pytest.raises(ValueError, match="at least one"):
        CharTokenizer(())
    with pytest.raises(ValueError, match="duplicates"):
        CharTokenizer(("a", "a"))
    with pytest.raises(TypeError, match="single character"):
        CharTokenizer(("ab",))


def test_dict_roundtrip(tok):
    assert CharTokenizer.from_dict(tok.to_dict()) == tok
    with pytest.raises(ValueError, match="not a dpolib character tokenizer"):
        CharTokenizer.from_dict({"kind": "bpe"})


def test_decode_rejects_ids_outside_vocab(tok):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([999])
