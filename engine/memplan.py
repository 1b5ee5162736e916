"""Memory plan: how many sequences one forward/backward carries on a device, chosen before any run trains.

A run's `batch_tokens` is its optimisation batch and part of its identity; the micro-batch
(sequences per forward/backward) and the number of gradient-accumulation steps that make up
that batch are an execution detail chosen per device, like the thread count. `plan_run` picks
the largest micro-batch that divides the batch and whose estimated peak fits the device.

How the peak is estimated (`estimate_peak`): one training step of the real `engine.model.GPT`
and the real optimiser (`engine.optim.build_optimizer`) runs on fake tensors
(`torch._subclasses.fake_tensor.FakeTensorMode`: shapes and dtypes, no storage, no arithmetic),
QAT on when the run quantises, and a dispatch mode counts the bytes of every live tensor
storage after each op. The step watched is the last micro-batch of a step of
`engine.train.Session.step` on a GPU, its most demanding: forward (under bf16 autocast or in
fp32) and backward with the earlier micro-batches' gradients held, DeepSpeed's flattened copy
of the gradients at the accumulation boundary (ZeRO stage 0 flattens them into one bucket to
all-reduce, even in a world of one), then the optimiser step with its state allocated, as from
the second step on. A step without accumulation is bounded by it (its gradients are born
during the backward instead of being held throughout).

Why a small hand-written counter and not `torch.distributed._tools.mem_tracker.MemTracker`:
MemTracker does work on fake tensors (tests/engine/test_memplan.py checks it gives this
module's peak), but it reports the peak of the one step it watched, and a planner needs the
peak at every candidate micro-batch. `_LiveBytes` keeps the whole timeline of live bytes
instead. Every tensor of the step is either independent of the micro-batch (weights, grads,
optimiser state) or proportional to it (activations), so the timeline at m sequences is
exactly T1 + (T2 - T1)(m - 1) op by op, from the timelines T1, T2 at one and two sequences:
two fake steps (seconds) price every micro-batch of a configuration.

What fake tensors cannot run, and what stands in for it (each is said where it is done):
- fake CUDA tensors: on a CPU-only torch, CUDA autocast is disabled and attention dispatch
  needs the CUDA runtime, so the step runs on fake *CPU* tensors under CPU bf16 autocast. Both
  autocasts run matmuls and attention in bf16 and the loss in fp32; their lists of other ops
  differ in detail.
- attention: on CUDA, SDPA runs a fused kernel (flash or cuDNN in bf16, memory-efficient in
  fp32; all support grouped KV heads) that saves its output and one log-sum-exp per row, never
  the (T, T) scores. The CPU flash kernel saves the same, so the estimate pins it (`sdpa_kernel`).
- kernels' internal workspaces (cuBLAS, the attention kernels' scratch) and the CUDA context
  are not tensors of the step; `CUDA_CONTEXT_BYTES` and `ALLOCATOR_FRAGMENTATION` allow for them.
- Adam/AdamW default to their foreach implementation on CUDA and to a per-tensor loop on CPU;
  the fake step sets foreach, as on CUDA (`_adam_as_on_cuda`).
- the training loop compiles the model on CUDA (inductor fuses elementwise ops and saves fewer
  activations); the estimate is of the eager model, an upper bound on the compiled one.

Checked against measurement (tests/engine/test_memplan.py): the tensor peak is within 0.02 %
of the peak the CPU allocator reports for real DeepSpeed steps (3M and 5M at seq_len 1024,
fp32 and bf16, FP and QAT, Muon and AdamW, with accumulation; 4 % over without it). The CUDA
allowance could not be checked there: no GPU.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only
from torch.utils.weak import WeakIdKeyDictionary

from engine.ladder import LADDER, get_config
from engine.precision import PRECISIONS
from engine.spec import RunSpec

GiB = 2**30
# No GPU to ask (planning on a login node, a CPU test): the paper profile's card, an 80 GB H100.
DEFAULT_DEVICE_GIB = 80.0
# Fraction of the device a plan may fill: the rest absorbs what the estimate cannot see (a
# longer-than-usual NCCL or cuDNN workspace, the evaluation pass's buffers, a newer torch).
DEFAULT_HEADROOM = 0.9
# Device memory that is no tensor of the step: the CUDA context and kernel images (~0.5 GiB on
# an H100), cuBLAS/cuBLASLt and cuDNN workspaces, NCCL's buffers for the world-of-one group
# DeepSpeed reduces over, inductor's autotuning scratch. A round figure above their sum.
CUDA_CONTEXT_BYTES = 2 * GiB
# PyTorch's caching allocator reserves more than its live tensors: a block freed at one size is
# split for smaller ones. Reserved over allocated is commonly a few to ~15 % in transformer
# training with activations of many sizes; take the high end (not measured here: no GPU).
ALLOCATOR_FRAGMENTATION = 0.15
# DeepSpeed's gradient bucket (deepspeed.runtime.engine.MEMORY_OPT_ALLREDUCE_SIZE, elements): at
# ZeRO stage 0 it flattens the gradients into buckets this large and all-reduces each copy.
DEEPSPEED_ALLREDUCE_BUCKET = 500_000_000
# The two micro-batch sizes whose timelines give every other by linear extrapolation.
_TRACE_SEQS = (1, 2)


# --- counting live storage bytes --------------------------------------------------------


class _LiveBytes(TorchDispatchMode):
    """Bytes of live tensor storage after every dispatched op (real or fake tensors).

    A storage is counted from the first op that returns it (or from `track`) until Python
    frees it (a weakref callback), at its current size: an op that resizes it is seen the
    next time the storage comes out of an op, as MemTracker does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.timeline: list[int] = []
        self._sizes = WeakIdKeyDictionary()  # storage -> [bytes counted, its weakref]

    def track(self, *tensors: torch.Tensor) -> None:
        for t in tensors:
            self._count(t)

    def _count(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        entry = self._sizes.get(st)
        if entry is None:
            entry = [0, None]
            entry[1] = weakref.ref(st, functools.partial(self._free, entry))
            self._sizes[st] = entry
        self.live += st.nbytes() - entry[0]
        entry[0] = st.nbytes()

    def _free(self, entry: list, _ref) -> None:
        self.live -= entry[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tree_map_only(torch.Tensor, self._count, out)
        self.timeline.append(self.live)
        return out


# --- one training step on fake tensors ------------------------------------------------------


@dataclass(frozen=True)
class StepShape:
    """What a step's memory depends on (the memo key): not the LR, seed, schedule or bit-width.

    `qat`: None for a full-precision run, else which matrices QAT fake-quantises
    (quantize_embeddings, keep_float_numel, keep_float); every bit-width runs the same ops.
    """

    size: str
    vocab: int
    seq_len: int
    qat: tuple[bool, int, str] | None
    optimizer: str
    precision: str

    @classmethod
    def of(cls, spec: RunSpec, precision: str, vocab_size: int | None = None) -> StepShape:
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        qat = (spec.quantize_embeddings, spec.keep_float_numel, spec.keep_float) if spec.quantised else None
        return cls(spec.size, vocab_size or vocab_of(spec), spec.seq_len, qat, spec.optimizer, precision)

    def spec(self) -> RunSpec:
        """A spec that builds this shape's model and optimiser (int8 stands for any QAT width)."""
        embed, numel, keep = self.qat or (False, 0, "")
        return RunSpec(size=self.size, bits=8 if self.qat else 16, optimizer=self.optimizer, seq_len=self.seq_len,
                       batch_tokens=self.seq_len, val_tokens=0, quantize_embeddings=embed,
                       keep_float_numel=numel, keep_float=keep)


def vocab_of(spec: RunSpec) -> int:
    """The run's vocabulary without loading its tokenizer: 'byte' 256, 'spN' N; a SentencePiece
    model file ('sp:path') is taken to have the ladder's reference vocabulary (sp1024 for the
    paper sizes), since the planning host need not hold the file."""
    from engine.tokenizer import ByteTokenizer, parse_spec

    kind, arg = parse_spec(spec.tokenizer)
    if kind == "byte":
        return ByteTokenizer.vocab_size
    return int(arg) if kind == "spN" else get_config(spec.size).ref_vocab


def _adam_as_on_cuda(opt: torch.optim.Optimizer) -> None:
    """torch's Adam/AdamW run their foreach implementation on CUDA (a temporary the size of a
    group's second moments during the step) and a per-tensor loop on CPU; estimate CUDA's."""
    for group in opt.param_groups:
        if "foreach" in group:  # Adam/AdamW groups; Muon's have no such option
            group["foreach"] = True


def _hold_gradients(model: torch.nn.Module) -> None:
    """Every gradient allocated, as the step's earlier micro-batches leave them."""
    for p in model.parameters():
        p.grad = torch.zeros_like(p)


def _deepspeed_allreduce_copy(params: list[torch.nn.Parameter]) -> None:
    """What DeepSpeed does with the gradients at an accumulation boundary at ZeRO stage 0
    (`allreduce_no_retain` -> `allreduce_and_copy`): flatten a bucket, reduce it (a no-op here),
    copy it back; one bucket copy is alive at a time."""
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in params if p.grad is not None]
    bucket: list[torch.Tensor] = []
    for i, g in enumerate(grads):
        bucket.append(g)
        if sum(b.numel() for b in bucket) > DEEPSPEED_ALLREDUCE_BUCKET or i == len(grads) - 1:
            flat = _flatten_dense_tensors(bucket)
            for dst, src in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                dst.copy_(src)
            del flat
            bucket = []


def fake_steps(shape: StepShape, micro_seqs: list[int], watch) -> None:
    """The last micro-batch of a steady-state training step of `shape` at each of `micro_seqs`
    sequences, on fake tensors, each watched by the context manager `watch(model, optimizer)`
    returns (a `_LiveBytes` here; MemTracker in the tests).

    The last micro-batch is a step's most demanding: the gradients of the earlier ones are held
    through its backward, then DeepSpeed's flattened copy and the optimiser step follow. Without
    accumulation the gradients are born during the backward instead, so holding them throughout
    bounds that step from above. The optimiser's state is allocated first, by a step on zero
    gradients, as the run's first step leaves it.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from engine.model import GPT
    from engine.optim import build_optimizer
    from engine.precision import Precision
    from engine.quant import QuantPolicy

    spec, precision = shape.spec(), Precision(shape.precision)
    # Pinned, not left to the dispatcher: it saves what CUDA's fused kernels save (module docstring).
    with FakeTensorMode(), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        model = GPT(get_config(shape.size), shape.vocab, quantize_embeddings=spec.quantize_embeddings)
        model.set_qat(spec.bits, QuantPolicy.of(spec))
        opt = build_optimizer(model, spec, ns_dtype=precision.ns_dtype)
        _adam_as_on_cuda(opt)
        _hold_gradients(model)
        opt.step()
        for seqs in micro_seqs:
            _hold_gradients(model)
            with watch(model, opt):
                x = torch.zeros(seqs, shape.seq_len, dtype=torch.long)  # (B, T): the micro-batch, copied to the device
                y = torch.zeros(seqs, shape.seq_len, dtype=torch.long)
                with precision.autocast(torch.device("cpu")):
                    loss = model(x, y)
                loss.backward()
                del loss, x, y
                _deepspeed_allreduce_copy(list(model.parameters()))
                opt.step()
                opt.zero_grad(set_to_none=True)


def _live_bytes_timelines(shape: StepShape, micro_seqs: list[int]) -> list[np.ndarray]:
    """Live bytes after every op of `fake_steps`' step, one timeline per micro-batch size."""
    counters: list[_LiveBytes] = []

    def watch(model, opt):
        counters.append(_LiveBytes())
        state = (v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor))
        counters[-1].track(*model.parameters(), *(p.grad for p in model.parameters()), *model.buffers(), *state)
        return counters[-1]

    fake_steps(shape, micro_seqs, watch)
    return [np.asarray(c.timeline, dtype=np.int64) for c in counters]


@functools.lru_cache(maxsize=None)
def _timeline_line(shape: StepShape) -> tuple[np.ndarray, np.ndarray]:
    """(a, b): live bytes after op t at m sequences per micro-batch are a[t] + b[t] * m."""
    lo, hi = _live_bytes_timelines(shape, list(_TRACE_SEQS))
    if lo.shape != hi.shape:
        raise RuntimeError(f"the step of {shape} ran {len(lo)} ops at {_TRACE_SEQS[0]} sequences and {len(hi)} "
                           f"at {_TRACE_SEQS[1]}: its memory is not linear in the micro-batch")
    slope = (hi - lo) // (_TRACE_SEQS[1] - _TRACE_SEQS[0])
    return lo - slope * _TRACE_SEQS[0], slope


# --- estimates ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _tensor_peak(shape: StepShape, micro_seqs: int) -> int:
    a, b = _timeline_line(shape)
    return int((a + b * micro_seqs).max())


def estimate_tensor_peak(spec: RunSpec, micro_seqs: int, *, precision: str = "bf16",
                         vocab_size: int | None = None) -> int:
    """Peak bytes of live tensors in one training step of `spec` at `micro_seqs` sequences per
    micro-batch (weights, gradients, optimiser state, activations, temporaries), no allowance."""
    if micro_seqs < 1:
        raise ValueError(f"micro_seqs must be >= 1, got {micro_seqs}")
    return _tensor_peak(StepShape.of(spec, precision, vocab_size), micro_seqs)


def with_allowance(tensor_bytes: int) -> int:
    """Device memory a process needs whose tensors peak at `tensor_bytes` (allocator slack + CUDA context)."""
    return int(tensor_bytes * (1 + ALLOCATOR_FRAGMENTATION)) + CUDA_CONTEXT_BYTES


def estimate_peak(spec: RunSpec, micro_seqs: int, *, precision: str = "bf16", vocab_size: int | None = None) -> int:
    """Peak device memory (bytes) of one training step of `spec` at `micro_seqs` sequences per
    micro-batch on a GPU: `estimate_tensor_peak` plus `with_allowance`'s slack. Eager model (an
    upper bound for the compiled one); QAT on when the spec quantises; memoised per `StepShape`."""
    return with_allowance(estimate_tensor_peak(spec, micro_seqs, precision=precision, vocab_size=vocab_size))


# --- plans --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MicroPlan:
    """How one run executes its batch on one device.

    `checkpointing` is always False: activation checkpointing trades compute for memory and
    is needed only when one sequence per micro-batch does not fit, and every paper size fits
    an 80 GB card with room to spare at one sequence (350M: ~7 GiB estimated; the tests plan
    the whole profile); a run that does not fit is refused by `plan_run` with the fix.
    """

    micro_seqs: int
    accum_steps: int
    checkpointing: bool
    est_peak_bytes: int
    device_memory: int

    @property
    def device_fraction(self) -> float:
        return self.est_peak_bytes / self.device_memory


def micro_candidates(batch_seqs: int) -> list[int]:
    """Micro-batch sizes that split `batch_seqs` into equal micro-batches, largest first."""
    return [d for d in range(batch_seqs, 0, -1) if batch_seqs % d == 0]


def plan_run(spec: RunSpec, device_memory: int, *, precision: str = "bf16",
             headroom: float = DEFAULT_HEADROOM, vocab_size: int | None = None) -> MicroPlan:
    """The largest micro-batch dividing `spec.batch_seqs` whose estimated peak is at most
    `headroom` x `device_memory`; ValueError (one line, with the fix) if not even one sequence fits."""
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom {headroom} must be in (0, 1]")
    budget = headroom * device_memory
    for micro in micro_candidates(spec.batch_seqs):
        peak = estimate_peak(spec, micro, precision=precision, vocab_size=vocab_size)
        if peak <= budget:
            return MicroPlan(micro, spec.batch_seqs // micro, False, peak, device_memory)
    raise ValueError(
        f"{spec.size} at seq_len {spec.seq_len} ({precision}{', QAT' if spec.quantised else ''}) needs an estimated "
        f"{peak / GiB:.1f} GiB with one sequence per micro-batch, more than {headroom:.0%} of the device's "
        f"{device_memory / GiB:.1f} GiB: give a larger device (--gpu-memory GIB) or a smaller seq_len or size")


@dataclass(frozen=True)
class PlanRow:
    """One distinct configuration of a profile, how many of its runs share it, and its plan."""

    size: str
    quantised: bool
    optimizer: str
    seq_len: int
    batch_seqs: int
    runs: int
    plan: MicroPlan = field(compare=False)


def plan_profile(specs: list[RunSpec], device_memory: int, precision: str = "bf16",
                 headroom: float = DEFAULT_HEADROOM) -> list[PlanRow]:
    """One row per distinct (size, QAT or not, optimiser, seq_len, batch) among `specs`, in ladder
    order, with the plan of its most demanding run (runs of a row may differ in QAT coverage)."""
    groups: dict[tuple, list[RunSpec]] = {}
    for s in specs:
        groups.setdefault((s.size, s.quantised, s.optimizer, s.seq_len, s.batch_seqs), []).append(s)
    rows = [PlanRow(*key, runs=len(group), plan=_tightest_plan(group, device_memory, precision, headroom))
            for key, group in groups.items()]
    order = list(LADDER)
    return sorted(rows, key=lambda r: (order.index(r.size), r.quantised, r.optimizer, r.seq_len, r.batch_seqs))


def _tightest_plan(specs: list[RunSpec], device_memory: int, precision: str, headroom: float) -> MicroPlan:
    one_per_shape = {StepShape.of(s, precision): s for s in specs}.values()
    plans = [plan_run(s, device_memory, precision=precision, headroom=headroom) for s in one_per_shape]
    return min(plans, key=lambda p: (p.micro_seqs, -p.est_peak_bytes))


def format_plan(rows: list[PlanRow]) -> str:
    """A printable table: per configuration its micro-batch, accumulation steps, checkpointing,
    estimated peak and share of the device."""
    head = ("size", "arm", "optimizer", "seq_len", "batch", "runs", "micro", "accum", "ckpt", "est GiB", "% device")
    body = [(r.size, "QAT" if r.quantised else "FP", r.optimizer, str(r.seq_len), str(r.batch_seqs), str(r.runs),
             str(r.plan.micro_seqs), str(r.plan.accum_steps), "yes" if r.plan.checkpointing else "no",
             f"{r.plan.est_peak_bytes / GiB:.1f}", f"{100 * r.plan.device_fraction:.0f}")
            for r in rows]
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in (head, *body)]
    device = f"device {rows[0].plan.device_memory / GiB:.1f} GiB" if rows else "no runs"
    return "\n".join([device, *lines])


def device_memory_bytes(gpu_memory_gib: float | None = None) -> int:
    """Bytes of device memory to plan for: `gpu_memory_gib` if given, else the visible GPU's total
    memory, else (no GPU here) DEFAULT_DEVICE_GIB."""
    if gpu_memory_gib is not None:
        if not gpu_memory_gib > 0:
            raise ValueError(f"--gpu-memory {gpu_memory_gib} must be a positive number of GiB")
        return int(gpu_memory_gib * GiB)
    if torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory)
    return int(DEFAULT_DEVICE_GIB * GiB)
