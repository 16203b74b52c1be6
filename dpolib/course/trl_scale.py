"""Running the TRL script beyond one process: accelerate configurations for one GPU,
several GPUs (DDP) and sharded training (FSDP, DeepSpeed ZeRO-3), and the memory of
model states per GPU under each, from the course's calculator.

Per GPU: DDP keeps a full copy of every model state on each GPU; FSDP and ZeRO-3
shard weights, gradients and optimizer states, so each GPU holds total / n_gpus
(activations and buffers come on top and are not counted).
"""

from __future__ import annotations

from dataclasses import dataclass

from .memory import GB, pipeline_memory

# accelerate launch --config_file <file> -m dpolib.pizza.trl: the YAML of each setup.
ACCELERATE_CONFIGS: dict[str, str] = {
    "1gpu": """\
compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
mixed_precision: bf16
num_machines: 1
num_processes: 1
""",
    "ddp": """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
mixed_precision: bf16
num_machines: 1
num_processes: 8
""",
    "fsdp": """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
mixed_precision: bf16
num_machines: 1
num_processes: 8
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_cpu_ram_efficient_loading: true
  fsdp_offload_params: false
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: SHARDED_STATE_DICT
""",
    "zero3": """\
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
mixed_precision: bf16
num_machines: 1
num_processes: 8
deepspeed_config:
  zero_stage: 3
  zero3_init_flag: true
  zero3_save_16bit_model: true
  offload_optimizer_device: none
  offload_param_device: none
""",
}

SIZES = {"0.5B": 0.5e9, "7B": 7e9, "70B": 70e9}


@dataclass(frozen=True)
class ScaleRow:
    """Model-state GB per GPU for one model size under each setup."""

    size: str
    one_gpu: float  # everything on one device
    ddp: float  # a full copy per GPU: the same as one GPU
    sharded: float  # FSDP / ZeRO-3 over n_gpus
    sharded_precomputed: float  # and the reference's log-probs precomputed
    n_gpus: int


def scale_table(
    n_gpus: int = 8, sizes: dict[str, float] | None = None
) -> list[ScaleRow]:
    """DPO's model states (policy trained with Adam in bf16, 16 B/param; reference
    frozen, 2 B/param) in GB per GPU: one GPU, DDP, sharded over `n_gpus`."""
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"n_gpus must be an int >= 1, got {n_gpus!r}")
    rows = []
    for label, n in (sizes or SIZES).items():
        full = pipeline_memory("dpo", n).total / GB
        pre = pipeline_memory("dpo", n, precomputed_reference=True).total / GB
        rows.append(ScaleRow(label, full, full, full / n_gpus, pre / n_gpus, n_gpus))
    return rows


def format_scale_table(rows: list[ScaleRow]) -> str:
    n = rows[0].n_gpus if rows else 0
    head = (
        f"{'size':>5} {'1 GPU':>8} {'DDP, each':>10} {f'sharded /{n}':>12} "
        f"{'+ ref. precomputed':>19}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.size:>5} {r.one_gpu:>8.1f} {r.ddp:>10.1f} {r.sharded:>12.1f} "
            f"{r.sharded_precomputed:>19.1f}"
        )
    return "\n".join(lines)
