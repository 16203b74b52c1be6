"""Characters <-> integer ids, with special tokens that can never appear in text."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from .errors import describe

if TYPE_CHECKING:
    import torch

# Angle-bracket names are not characters, so no text can ever contain them. (The
# original text used the letter "E" as its end marker, which breaks on any food with a
# capital E.)
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, EOS)


@dataclass(frozen=True)
class CharTokenizer:
    """A character-level tokenizer: id 0 is padding, 1 begins a sequence, 2 ends it,
    then one id per character."""

    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        chars = tuple(self.chars)
        if not chars:
            raise ValueError(
                "CharTokenizer needs at least one character; pass the alphabet of "
                "your corpus"
            )
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise TypeError(
                    f"each entry of chars must be a single character, got {describe(c)}"
                )
        if len(set(chars)) != len(chars):
            raise ValueError(
                "chars contains duplicates; pass each character once (e.g. "
                "sorted(set(text)))"
            )
        object.__setattr__(self, "chars", chars)
        object.__setattr__(
            self, "_index", {c: i + len(SPECIAL_TOKENS) for i, c in enumerate(chars)}
        )

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CharTokenizer":
        """Build the alphabet from every character that occurs in `texts` (sorted, so
        it is repeatable)."""
        return cls(tuple(sorted({c for t in texts for c in t})))

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.chars)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Map `text` to ids, optionally framed by the begin and end tokens."""
        if not isinstance(text, str):
            raise TypeError(
                f"encode expects a str, got {type(text).__name__} {describe(text)}"
            )
        ids = [self.bos_id] if bos else []
        for pos, c in enumerate(text):
            i = self._index.get(c)  # type: ignore[attr-defined]
            if i is None:
                raise ValueError(
                    f"character {c!r} at position {pos} of {describe(text)} is not in "
                    f"the tokenizer's alphabet {describe(''.join(self.chars))}; remove "
                    "it from the text or build the tokenizer from texts that contain it"
                )
            ids.append(i)
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(
        self, ids: Sequence[int] | torch.Tensor, skip_special: bool = True
    ) -> str:
        """Map ids back to text; special tokens are dropped, or shown by name when
        `skip_special` is False."""
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise TypeError(
                f"decode expects a sequence of int ids, got {type(ids).__name__} "
                f"{describe(ids)}"
            )
        out = []
        values = ids.tolist() if hasattr(ids, "tolist") else ids
        for pos, i in enumerate(values):
            # ints (NumPy's too) have __index__; 3.7, "3" and None do not
            if isinstance(i, bool) or not hasattr(type(i), "__index__"):
                raise TypeError(
                    f"id {describe(i)} at position {pos} is not an int; decode takes "
                    "token ids (ints), as encode returns them"
                )
            i = operator.index(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(
                    f"id {i} at position {pos} is outside the vocabulary "
                    f"[0, {self.vocab_size}); decode ids made by this tokenizer"
                )
            if i < len(SPECIAL_TOKENS):
                if not skip_special:
                    out.append(SPECIAL_TOKENS[i])
            else:
                out.append(self.chars[i - len(SPECIAL_TOKENS)])
        return "".join(out)

    def to_dict(self) -> dict:
        """A plain description for checkpoints (strings only, so it loads with
        weights_only=True)."""
        return {
            "kind": "char",
            "chars": "".join(self.chars),
            "special": list(SPECIAL_TOKENS),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if d.get("kind") != "char" or list(d.get("special", [])) != list(
            SPECIAL_TOKENS
        ):
            raise ValueError(
                f"not a dpolib character tokenizer description: {describe(d)}"
            )
        return cls(tuple(d["chars"]))
