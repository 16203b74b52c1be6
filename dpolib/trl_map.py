"""Where each argument of `run_dpo_episodes` and each dpolib loss type lives in TRL.

The rows are checked against the installed code when they are built: every parameter
of run_dpo_episodes must have a row, every TRL name must exist in the installed
trl.DPOConfig (or DPOTrainer's signature), and TRL's defaults are read from DPOConfig,
so a renamed field breaks `config_mapping()` (and its test), not the reader.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass

from .losses import ABLATIONS, LOSS_TYPES

# dpolib argument -> (where in TRL: "config" field(s) or "trainer" argument, note)
_ARGUMENTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "num_epochs": ("config", ("num_train_epochs",), "same meaning"),
    "preference_dataset": (
        "trainer",
        ("train_dataset",),
        "a datasets.Dataset with prompt/chosen/rejected columns",
    ),
    "policy": ("trainer", ("model",), "a transformers model (dpolib.hf.to_hf_model)"),
    "reference_policy": (
        "trainer",
        ("ref_model",),
        "pass it: None reloads the model by name",
    ),
    "policy_optimizer": (
        "config",
        ("optim", "learning_rate", "weight_decay"),
        "TRL builds AdamW; weight_decay=0 makes it Adam",
    ),
    "tokenizer": ("trainer", ("processing_class",), "dpolib.hf.to_hf_tokenizer"),
    "beta": ("config", ("beta",), "same meaning"),
    "print_every": ("config", ("logging_steps",), "TRL counts steps, dpolib epochs"),
    "checkpoint_dir": ("config", ("output_dir",), "TRL requires it"),
    "checkpoint_every": (
        "config",
        ("save_strategy", "save_steps"),
        "save_strategy='epoch' counts like dpolib",
    ),
    "loss_type": ("config", ("loss_type", "loss_weights"), "a list in TRL"),
    "label_smoothing": (
        "config",
        ("label_smoothing",),
        "TRL's sigmoid ignores it (robust, exo_pair, aot use it)",
    ),
    "batch_size": (
        "config",
        ("per_device_train_batch_size", "gradient_accumulation_steps"),
        "global batch = per device x processes x accumulation",
    ),
    "merge_identical": ("none", (), "TRL forwards every padded row"),
    "average_logprobs": (
        "none",
        (),
        "TRL sums; only ipo and sigmoid_norm divide by the token count",
    ),
    "anchor": ("none", (), "no KL anchor on other prompts in DPOTrainer"),
    "resume_from": (
        "config",
        ("resume_from_checkpoint",),
        "or trainer.train(resume_from_checkpoint=...)",
    ),
    "generator": ("config", ("seed", "data_seed"), "TRL seeds globally"),
    "progress": ("config", ("disable_tqdm",), "inverted"),
    "callback": ("trainer", ("callbacks",), "a TrainerCallback's on_log"),
}

# TRL settings with no dpolib argument whose default changes the math.
_TRL_ONLY = {
    "bf16": "None means True (bfloat16); dpolib trains in float32: set False",
    "max_grad_norm": "dpolib does not clip: set 0",
    "lr_scheduler_type": "dpolib's learning rate is constant: set 'constant'",
    "activation_checkpointing": "on by TRL's gradient_checkpointing=True: slower",
    "precompute_ref_log_probs": "dpolib always precomputes the reference",
}

# dpolib loss (and label_smoothing) -> TRL loss_type list, note
_LOSSES: dict[str, tuple[tuple[str, ...], str]] = {
    "sigmoid": (("sigmoid",), "identical with label_smoothing=0"),
    "sigmoid, label_smoothing > 0 (cDPO)": (
        (),
        "no TRL 1.16 loss: its sigmoid ignores label_smoothing",
    ),
    "robust": (("robust",), "identical"),
    "ipo": (
        ("ipo",),
        "TRL divides each log-ratio by the completion's token count: "
        "dpolib ipo with average_logprobs=True",
    ),
    "hinge": (("hinge",), "identical"),
    "unweighted": ((), "an ablation, not in TRL"),
}


@dataclass(frozen=True)
class MappingRow:
    """One dpolib name and where its meaning lives in TRL, with TRL's default."""

    dpolib: str
    kind: str  # "config" (a DPOConfig field), "trainer" (a DPOTrainer argument), "none"
    trl: tuple[str, ...]
    trl_default: str
    note: str


def _dpo_config_defaults() -> dict[str, object]:
    from trl import DPOConfig

    out = {}
    for f in dataclasses.fields(DPOConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


def trl_loss_types() -> tuple[str, ...]:
    """The loss_type values the installed DPOConfig documents (read from its help)."""
    from trl import DPOConfig

    field = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type")
    help_text = field.metadata["help"].split("If multiple")[0]
    return tuple(re.findall(r"'([a-z_]+)'", help_text))


def config_mapping() -> list[MappingRow]:
    """A row per run_dpo_episodes parameter, then TRL-only settings; checked against
    the installed trl (ValueError on a renamed or missing name)."""
    from trl import DPOTrainer

    from .train import run_dpo_episodes

    params = list(inspect.signature(run_dpo_episodes).parameters)
    if set(params) != set(_ARGUMENTS):
        raise ValueError(
            "run_dpo_episodes' parameters changed: unmapped "
            f"{sorted(set(params) - set(_ARGUMENTS))}, stale "
            f"{sorted(set(_ARGUMENTS) - set(params))}; update dpolib.trl_map._ARGUMENTS"
        )
    defaults = _dpo_config_defaults()
    trainer_args = set(inspect.signature(DPOTrainer.__init__).parameters)
    rows = []
    for name in params:
        kind, trl_names, note = _ARGUMENTS[name]
        known = defaults if kind == "config" else trainer_args
        missing = [t for t in trl_names if t not in known]
        if missing:
            raise ValueError(
                f"the installed trl has no {kind} name {missing} (mapped from "
                f"{name!r}); TRL renamed it: update dpolib.trl_map"
            )
        shown = (
            ", ".join(repr(defaults[t]) for t in trl_names) if kind == "config" else ""
        )
        rows.append(MappingRow(name, kind, trl_names, shown, note))
    for name, note in _TRL_ONLY.items():
        if name not in defaults:
            raise ValueError(f"the installed DPOConfig has no field {name!r}")
        rows.append(MappingRow("(none)", "config", (name,), repr(defaults[name]), note))
    return rows


def loss_mapping() -> list[MappingRow]:
    """A row per dpolib loss type (cDPO apart), checked against TRL's loss_type list."""
    installed = trl_loss_types()
    covered = {n.split(",")[0] for n in _LOSSES}
    if covered != set(LOSS_TYPES + ABLATIONS):
        raise ValueError(
            f"dpolib's loss types {LOSS_TYPES + ABLATIONS} changed; update "
            "dpolib.trl_map._LOSSES"
        )
    rows = []
    for name, (trl_names, note) in _LOSSES.items():
        missing = [t for t in trl_names if t not in installed]
        if missing:
            raise ValueError(
                f"the installed trl has no loss_type {missing}; it offers {installed}"
            )
        rows.append(MappingRow(name, "loss", trl_names, "", note))
    return rows


def format_rows(rows: list[MappingRow]) -> str:
    """A fixed-width text table of mapping rows."""
    head = ("dpolib", "TRL", "TRL default", "note")
    body = [
        (r.dpolib, ", ".join(r.trl) or "-", r.trl_default or "-", r.note) for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(3)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line[:3], widths)) + "  " + line[3]
        for line in [head, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
