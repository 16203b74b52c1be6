import numpy as np
import pytest
import torch

from dpolib.tokenizer import BOS, EOS, PAD, CharTokenizer


def test_roundtrip_and_special_ids(tok):
    ids = tok.encode("ravin likes pizza", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "ravin likes pizza"
    assert tok.decode(ids, skip_special=False) == f"{BOS}ravin likes pizza{EOS}"
    assert {tok.pad_id, tok.bos_id, tok.eos_id} == {0, 1, 2}
    assert tok.vocab_size == 3 + 27


def test_end_marker_is_not_a_character():
    # the original text used the letter "E" as its end marker; ours cannot collide
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


def test_decode_rejects_negative_ids_and_non_integers(tok):
    # decode([-1]) used to give "" (or "<eos>"), decode([3.7]) " "
    for bad in ([-1], [tok.vocab_size], [5, -3]):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            tok.decode(bad)
    with pytest.raises(ValueError, match=r"id -1 at position 0 .*\[0, 30\)"):
        tok.decode([-1], skip_special=False)
    for bad in ([3.7], [3.0], ["3"], [None], [True], torch.tensor([3.0])):
        with pytest.raises(TypeError, match="is not an int"):
            tok.decode(bad)
    for bad in ("abc", 3, None):
        with pytest.raises(TypeError, match="sequence of int ids"):
            tok.decode(bad)
    # what is still accepted: lists, tuples, integer tensors and NumPy ints
    ids = tok.encode("pizza", eos=True)
    assert tok.decode(torch.tensor(ids)) == tok.decode(tuple(ids)) == "pizza"
    assert tok.decode(np.array(ids)) == tok.decode([np.int64(i) for i in ids])


def test_error_messages_quote_long_text_short(tok):
    text = "a" * 1_000_000 + "!"
    with pytest.raises(ValueError, match="not in the tokenizer's alphabet") as err:
        tok.encode(text)
    assert len(str(err.value)) < 600 and "1000003 characters" in str(err.value)
    with pytest.raises(TypeError, match="encode expects a str, got list"):
        tok.encode(list("pizza"))
