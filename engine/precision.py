"""How a run computes: its precision (fp32, or bf16 autocast over fp32 master weights) and compilation.

These are runtime settings like the device, not RunSpec fields: they do not enter a run's
identity (a bf16 run and an fp32 run of one spec share a cache entry, as runs on two machines
do), and they are written into the run record's provenance so a record says how it was made.

Defaults are the ones that pay on each device: CUDA trains in bf16 autocast with a compiled
model and bf16 Newton-Schulz (the parameter-golf setting); CPU trains in fp32, eager, with fp32
Newton-Schulz, because on CPUs without bf16 matrix units bf16 is slower, and compiling a tiny
model costs more seconds than its run (measured by `python -m engine bench --compile`).
Either can be asked for on any device (`--precision bf16 --compile` on CPU runs the GPU
path with inductor's C++ backend), which is how CI exercises the CUDA path without a GPU.

What bf16 means here, everywhere (single and packed, training and evaluation):
- the forward runs under `torch.autocast(device, bfloat16)`: matmuls and attention in bf16,
  weights stay fp32 parameters (cast per use, as parameter-golf's CastedLinear does), the
  loss is computed in fp32 (the model casts its logits);
- gradients and optimiser state are fp32; DeepSpeed sees an fp32 model and an fp32 loss
  (its own `bf16` config section is off: it would turn the model's weights into bf16 and
  keep fp32 masters inside its optimiser wrapper, which is not the recipe's arithmetic);
- Muon's Newton-Schulz iterations run in bf16 (torch.optim.Muon's and parameter-golf's choice).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from engine.options import PRECISION_CHOICES as PRECISIONS  # the one list, which the flags also offer

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Precision:
    """One run's compute settings: `name` in PRECISIONS, `compile` = torch.compile the model."""

    name: str = "fp32"
    compile: bool = False
    # torch.compile's backend: inductor (Triton on CUDA, C++ on CPU) for training; the tests that
    # check dynamo's bookkeeping use "aot_eager" (the same dynamo graphs and limits, no C++ build)
    backend: str = "inductor"

    def __post_init__(self):
        if self.name not in PRECISIONS:
            raise ValueError(f"--precision {self.name!r} is not one of {', '.join(PRECISIONS)}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true or false, got {self.compile!r}")

    @property
    def dtype(self) -> torch.dtype:
        """The forward's compute dtype (weights and optimiser state stay fp32)."""
        return _DTYPES[self.name]

    @property
    def ns_dtype(self) -> torch.dtype:
        """Muon's Newton-Schulz dtype: follows the forward's precision."""
        return self.dtype

    def autocast(self, device: torch.device):
        """The forward's precision context on `device`: bf16 autocast, or nothing (fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def maybe_compile(self, module: torch.nn.Module):
        """The module, compiled (inductor: Triton on CUDA, C++ on CPU) if asked."""
        return torch.compile(module, backend=self.backend) if self.compile else module

    def describe(self) -> dict:
        """What the run record's provenance keeps (a compiled run's record replaces `compiled` with
        what dynamo's counters say ran: engine.compilation)."""
        return {"precision": self.name, "compiled": self.compile}


def default_precision(device: torch.device) -> Precision:
    """bf16 + compile on CUDA, fp32 eager elsewhere (see the module docstring for why)."""
    cuda = device.type == "cuda"
    return Precision("bf16" if cuda else "fp32", compile=cuda)


def resolve_precision(device: torch.device, name: str | None = None, compile: bool | None = None) -> Precision:
    """The device's default with any explicit choice applied; ValueError on a bad name."""
    base = default_precision(device)
    return Precision(name if name is not None else base.name, base.compile if compile is None else compile)
