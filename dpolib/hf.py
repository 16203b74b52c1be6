"""dpolib <-> Hugging Face transformers: the GPT as a GPT2LMHeadModel, the reward model
as a GPT2ForSequenceClassification, the character tokenizer as a
PreTrainedTokenizerFast, both directions.

The two models compute the same function: logits_hf(ids) == logits_dpolib(ids) on
every unpadded row (bitwise with SDPA attention on the CPU). transformers is imported
lazily, so the rest of dpolib works without it (`pip install "dpolib[hf]"`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .errors import describe
from .model import GPT, GPTConfig
from .reward import RewardModel, ScalarHeadGPT
from .tokenizer import SPECIAL_TOKENS, CharTokenizer

if TYPE_CHECKING:  # only for type hints; importing transformers is slow and optional
    from transformers import (
        GPT2ForSequenceClassification,
        GPT2LMHeadModel,
        PreTrainedTokenizerFast,
    )

# The versions this module and the chapter were tested with (inclusive lower, exclusive
# upper bound). Outside them TRL has renamed fields and changed defaults before.
SUPPORTED = {
    "transformers": ("5.24.0", "6"),
    "trl": ("1.16.0", "1.17"),
    "accelerate": ("1.15.0", "2"),
    "datasets": ("5.2.0", "6"),
}
INSTALL_HINT = 'pip install "dpolib[hf]"'


class HFVersionError(ImportError):
    """An optional Hugging Face package is missing or outside the tested range."""


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
        if digits != part:  # 1.17.0rc1: stop at the pre-release tag
            break
    return tuple(out)


def check_version(package: str, installed: str | None = None) -> str:
    """The installed version of `package` if low <= version < high (SUPPORTED), else
    HFVersionError naming the supported range and the install command."""
    if package not in SUPPORTED:
        raise ValueError(
            f"package must be one of {sorted(SUPPORTED)}, got {describe(package)}"
        )
    low, high = SUPPORTED[package]
    if installed is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version(package)
        except PackageNotFoundError:
            raise HFVersionError(
                f"{package} is not installed; dpolib.hf needs {package} "
                f">={low},<{high}: {INSTALL_HINT}"
            ) from None
    v = _version_tuple(installed)
    if not (_version_tuple(low) <= v < _version_tuple(high)):
        raise HFVersionError(
            f"{package} {installed} is outside the range dpolib was tested with "
            f"(>={low},<{high}); install the tested versions with {INSTALL_HINT}"
        )
    return installed


def _transformers():
    check_version("transformers")
    import transformers

    return transformers


# dpolib parameter name -> (GPT2 parameter name, transpose?). GPT-2 stores its linear
# layers as Conv1D with weight (in, out), the transpose of nn.Linear's (out, in).
def _name_map(n_layer: int) -> dict[str, tuple[str, bool]]:
    m = {
        "tok_emb.weight": ("transformer.wte.weight", False),
        "pos_emb.weight": ("transformer.wpe.weight", False),
        "ln_f.weight": ("transformer.ln_f.weight", False),
        "ln_f.bias": ("transformer.ln_f.bias", False),
        "head.weight": ("lm_head.weight", False),
    }
    for i in range(n_layer):
        d, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            m[d + ours + ".weight"] = (h + theirs + ".weight", False)
            m[d + ours + ".bias"] = (h + theirs + ".bias", False)
        for ours, theirs in (
            ("attn.qkv", "attn.c_attn"),
            ("attn.proj", "attn.c_proj"),
            ("mlp.0", "mlp.c_fc"),
            ("mlp.2", "mlp.c_proj"),
        ):
            m[d + ours + ".weight"] = (h + theirs + ".weight", True)
            m[d + ours + ".bias"] = (h + theirs + ".bias", False)
    return m


def gpt2_config(cfg: GPTConfig, tokenizer: CharTokenizer | None = None) -> Any:
    """The GPT2Config that computes what dpolib's GPT computes: exact GELU, untied
    bias-free head, LayerNorm eps 1e-5, no dropout, n_positions = block_size."""
    transformers = _transformers()
    tok = tokenizer
    return transformers.GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function="gelu",  # nn.GELU() is the exact erf form, not gelu_new
        layer_norm_epsilon=1e-5,  # nn.LayerNorm's default
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=False,  # dpolib's head is its own matrix
        bos_token_id=1 if tok is None else tok.bos_id,
        eos_token_id=2 if tok is None else tok.eos_id,
        pad_token_id=0 if tok is None else tok.pad_id,
    )


def to_hf_model(
    model: GPT, tokenizer: CharTokenizer | None = None, attn: str = "sdpa"
) -> "GPT2LMHeadModel":
    """A transformers GPT2LMHeadModel with `model`'s weights (copied, on its device):
    the same logits on every unpadded sequence. Pass `tokenizer` to check it matches."""
    if not isinstance(model, GPT):
        raise TypeError(
            f"model must be a dpolib GPT, got {type(model).__name__}; "
            "convert a transformers model with from_hf_model instead"
        )
    if model.config.dropout:
        raise ValueError(
            f"model.config.dropout is {model.config.dropout}; the port is exact only "
            "without dropout: rebuild the model with dropout=0"
        )
    if tokenizer is not None:
        check_tokenizer(model, tokenizer)
    transformers = _transformers()
    cfg = gpt2_config(model.config, tokenizer)
    cfg._attn_implementation = attn
    hf = transformers.GPT2LMHeadModel(cfg)
    _copy_weights(model, hf, _name_map(model.config.n_layer))
    return hf.to(model.device).eval()


def _copy_weights(
    model: torch.nn.Module, hf: Any, name_map: dict[str, tuple[str, bool]]
) -> None:
    """Load `model`'s weights into the transformers model `hf` under `name_map`'s
    names (dpolib name -> (transformers name, transposed)); refuse a changed layout."""
    ours = model.state_dict()
    theirs = {}
    for name, (hf_name, transpose) in name_map.items():
        t = ours[name].detach().clone()
        theirs[hf_name] = t.t().contiguous() if transpose else t
    missing, unexpected = hf.load_state_dict(theirs, strict=False)
    # GPT-2 keeps a causal-mask buffer in some versions; nothing else may be missing
    left = [k for k in missing if not k.endswith(".attn.bias")]
    if left or unexpected:
        raise RuntimeError(
            f"the GPT-2 layout changed (missing {left}, unexpected {unexpected}); "
            f"use transformers within {SUPPORTED['transformers']}"
        )


def _check_gpt2_config(c: Any, kind: str, maker: str) -> None:
    """ValueError unless the GPT-2 config `c` computes what dpolib's GPT computes."""
    problems = []
    if c.activation_function != "gelu":
        problems.append(f"activation_function={c.activation_function!r} (need 'gelu')")
    if c.tie_word_embeddings:
        problems.append("tie_word_embeddings=True (need False)")
    if abs(c.layer_norm_epsilon - 1e-5) > 0:
        problems.append(f"layer_norm_epsilon={c.layer_norm_epsilon} (need 1e-05)")
    if getattr(c, "scale_attn_by_inverse_layer_idx", False) or getattr(
        c, "reorder_and_upcast_attn", False
    ):
        problems.append("scaled or reordered attention (need the plain form)")
    if not getattr(c, "scale_attn_weights", True):
        problems.append("scale_attn_weights=False (need True)")
    if c.n_inner not in (None, 4 * c.n_embd):
        problems.append(f"n_inner={c.n_inner} (need 4 * n_embd = {4 * c.n_embd})")
    if problems:
        raise ValueError(
            f"this {kind} computes something dpolib's GPT cannot: "
            + "; ".join(problems)
            + f". Convert only models made by {maker} (or configured "
            "by dpolib.hf.gpt2_config)"
        )


def from_hf_model(hf_model: Any) -> GPT:
    """A dpolib GPT with the weights of a GPT2LMHeadModel built like `to_hf_model`'s."""
    transformers = _transformers()
    if not isinstance(hf_model, transformers.GPT2LMHeadModel):
        raise TypeError(
            "hf_model must be a transformers GPT2LMHeadModel (the layout dpolib's "
            f"GPT shares), got {type(hf_model).__name__}; other architectures have no "
            "dpolib twin: train them with TRL directly"
        )
    c = hf_model.config
    _check_gpt2_config(c, "GPT2LMHeadModel", "dpolib.hf.to_hf_model")
    cfg = GPTConfig(
        c.vocab_size,
        block_size=c.n_positions,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
    )
    model = GPT(cfg)
    theirs = hf_model.state_dict()
    ours = {}
    for name, (hf_name, transpose) in _name_map(cfg.n_layer).items():
        t = theirs[hf_name].detach().clone()
        ours[name] = t.t().contiguous() if transpose else t
    model.load_state_dict(ours)
    return model.to(hf_model.device).eval()


def check_tokenizer(model: GPT, tokenizer: CharTokenizer) -> None:
    """ValueError unless `tokenizer` has exactly the model's vocabulary size."""
    if not isinstance(tokenizer, CharTokenizer):
        raise TypeError(
            f"tokenizer must be a dpolib CharTokenizer, got {type(tokenizer).__name__}"
        )
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary "
            f"is {model.config.vocab_size}; pass the tokenizer the model was trained "
            f"with (alphabet {describe(''.join(tokenizer.chars))} does not fit)"
        )


def to_hf_tokenizer(
    tokenizer: CharTokenizer, model_max_length: int | None = None
) -> "PreTrainedTokenizerFast":
    """A PreTrainedTokenizerFast with one token per character and the same ids:
    hf(text).input_ids == tokenizer.encode(text, bos=True); "<eos>" in text is the end
    token (TRL appends it to completions itself)."""
    if not isinstance(tokenizer, CharTokenizer):
        raise TypeError(
            f"tokenizer must be a dpolib CharTokenizer, got {type(tokenizer).__name__}"
        )
    transformers = _transformers()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    pad, bos, eos = SPECIAL_TOKENS
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    vocab.update({c: i + len(SPECIAL_TOKENS) for i, c in enumerate(tokenizer.chars)})
    # No unknown token on purpose: a character outside the alphabet must fail loudly.
    core = Tokenizer(models.WordLevel(vocab, unk_token=None))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A $B",
        special_tokens=[(bos, tokenizer.bos_id)],
    )
    kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        padding_side="right",
        **kwargs,
    )
    return hf


def from_hf_tokenizer(hf_tokenizer: Any) -> CharTokenizer:
    """The CharTokenizer behind a tokenizer made by `to_hf_tokenizer` (ids checked)."""
    try:
        vocab = hf_tokenizer.get_vocab()
    except AttributeError:
        raise TypeError(
            "hf_tokenizer must be a transformers tokenizer, got "
            f"{type(hf_tokenizer).__name__}"
        ) from None
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    ids = [i for _, i in by_id]
    names = [t for t, _ in by_id]
    if (
        ids != list(range(len(ids)))
        or tuple(names[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS
        or any(len(t) != 1 for t in names[len(SPECIAL_TOKENS) :])
    ):
        raise ValueError(
            "not a character tokenizer made by dpolib.hf.to_hf_tokenizer (it needs ids "
            f"0-2 = {SPECIAL_TOKENS} and then one id per character); got vocabulary "
            f"{describe(dict(by_id))}"
        )
    return CharTokenizer(tuple(names[len(SPECIAL_TOKENS) :]))


@torch.no_grad()
def max_logit_difference(model: GPT, hf_model: Any, input_ids: torch.Tensor) -> float:
    """max |logits_dpolib - logits_hf| over a (batch, time) batch of unpadded rows."""
    ours = model(input_ids)
    theirs = hf_model(input_ids=input_ids).logits
    return float((ours - theirs).abs().max())


# --------------------------------------------------------------------------------
# The reward model: ScalarHeadGPT <-> GPT2ForSequenceClassification (num_labels=1)
# --------------------------------------------------------------------------------
def _reward_name_map(n_layer: int) -> dict[str, tuple[str, bool]]:
    # the body's names without the vocabulary head, then the scalar head
    m = {
        "body." + ours: (theirs, t)
        for ours, (theirs, t) in _name_map(n_layer).items()
        if ours != "head.weight"
    }
    m["score_head.weight"] = ("score.weight", False)
    return m


def to_hf_reward_model(
    model: ScalarHeadGPT, tokenizer: CharTokenizer | None = None, attn: str = "sdpa"
) -> "GPT2ForSequenceClassification":
    """A GPT2ForSequenceClassification (num_labels=1) with `model`'s weights: the same
    r_phi(x, y) = w . h_T, read at the last non-pad token (the end token)."""
    if not isinstance(model, ScalarHeadGPT):
        hint = (
            "; build one with dpolib.reward.RewardModel(base, tokenizer)"
            if isinstance(model, GPT)
            else ""
        )
        raise TypeError(
            f"model must be a dpolib RewardModel (a ScalarHeadGPT), got "
            f"{type(model).__name__}{hint}"
        )
    bias = float(model.score_head.bias.detach().abs().max())
    if bias != 0.0:
        # transformers' score head is bias-free. Bradley-Terry cannot see a bias (it
        # cancels in r_w - r_l, so its gradient is 0 and it stays at its zero init).
        raise ValueError(
            f"model.score_head.bias is {describe(model.score_head.bias.tolist())}; "
            "GPT2ForSequenceClassification's score head has no bias. Set it to 0 "
            "(every score shifts by the same constant, no preference changes)"
        )
    if model.config.dropout:
        raise ValueError(
            f"model.config.dropout is {model.config.dropout}; the port is exact only "
            "without dropout: rebuild the model with dropout=0"
        )
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    check_tokenizer(model.body, tokenizer)
    transformers = _transformers()
    cfg = gpt2_config(model.config, tokenizer)
    cfg.num_labels = 1
    cfg._attn_implementation = attn
    hf = transformers.GPT2ForSequenceClassification(cfg)
    _copy_weights(model, hf, _reward_name_map(model.config.n_layer))
    return hf.to(model.device).eval()


def from_hf_reward_model(hf_model: Any, tokenizer: CharTokenizer) -> RewardModel:
    """A dpolib RewardModel with the weights of a GPT2ForSequenceClassification built
    like `to_hf_reward_model`'s (a zero bias on the scalar head)."""
    transformers = _transformers()
    if not isinstance(hf_model, transformers.GPT2ForSequenceClassification):
        raise TypeError(
            "hf_model must be a transformers GPT2ForSequenceClassification (the "
            f"layout dpolib's RewardModel shares), got {type(hf_model).__name__}"
        )
    if hf_model.config.num_labels != 1:
        raise ValueError(
            f"hf_model has num_labels={hf_model.config.num_labels}; a reward model "
            "has one output (num_labels=1)"
        )
    c = hf_model.config
    _check_gpt2_config(
        c, "GPT2ForSequenceClassification", "dpolib.hf.to_hf_reward_model"
    )
    body = GPT(
        GPTConfig(
            c.vocab_size,
            block_size=c.n_positions,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_embd=c.n_embd,
        )
    )
    check_tokenizer(body, tokenizer)
    model = RewardModel(body, tokenizer)
    theirs = hf_model.state_dict()
    ours = {}
    for name, (hf_name, transpose) in _reward_name_map(c.n_layer).items():
        t = theirs[hf_name].detach().clone()
        ours[name] = t.t().contiguous() if transpose else t
    ours["score_head.bias"] = torch.zeros(1)
    model.load_state_dict(ours)
    return model.to(hf_model.device).eval()
