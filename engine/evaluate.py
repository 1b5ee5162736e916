"""Validation: loss and bits per byte, in training precision and after an export round trip.

val_bpb = (summed token cross-entropy in nats / ln 2) / (UTF-8 bytes the targets cover),
with the byte counts from the tokenizer's lookup tables (engine.bpb), so the figure is
comparable across tokenizers. The round trip exports the weights exactly as a deployed
model would be stored (`export`, engine.quant, under the run's `QuantPolicy`) and evaluates
the dequantised copy with fake quantisation off: what counts is the model that ships.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from engine.bpb import bits_per_byte, target_bytes
from engine.data import Corpus, val_batches
from engine.model import GPT
from engine.quant import QuantPolicy, export_state_dict, grid_distance, import_state_dict
from engine.runtime import autocast_for
from engine.spec import is_quantised

FP16_PROBE_BITS = 6  # an FP16 run's "own grid" is INT6's: the paper's deployment target
EVAL_BATCH_SEQS = 32  # sequences per forward pass in evaluation; memory only, not the result


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean nats per token
    bpb: float
    tokens: int
    bytes: int


@torch.no_grad()
def evaluate(model: GPT, corpus: Corpus, seq_len: int, max_tokens: int, device: torch.device,
             precision=None) -> EvalResult:
    """Loss and bpb of `model` on the validation split, computed as the run trained (`precision`,
    an engine.precision.Precision; None: the device default), as parameter-golf evaluates under
    its training autocast: val_bpb is "in training precision" whatever the device."""
    luts = [torch.tensor(t, device=device) for t in corpus.tokenizer.luts()]  # copies: the LUTs are read-only
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_bytes = torch.zeros((), dtype=torch.float64, device=device)
    n_tokens = 0
    for x, y in val_batches(corpus.val, seq_len, EVAL_BATCH_SEQS, max_tokens or None):
        x, y = x.to(device), y.to(device)
        with autocast_for(device, precision):
            loss_sum += model(x, y, reduction="sum").double()
        n_bytes += target_bytes(x.flatten(), y.flatten(), *luts).double().sum()
        n_tokens += y.numel()
    model.train(was_training)
    if n_tokens == 0:
        raise ValueError(f"validation split has fewer than seq_len+1={seq_len + 1} tokens")
    total_loss = float(loss_sum)
    return EvalResult(total_loss / n_tokens, bits_per_byte(total_loss, float(n_bytes)), n_tokens, int(n_bytes))


def export(model: GPT, bits: int, policy: QuantPolicy = QuantPolicy()) -> dict:
    """The export object of `model` at `bits` (engine.quant.export_state_dict), on the CPU."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return export_state_dict(state, bits, set(model.quantized_weight_names()), policy)


def load_export(model: GPT, exported: dict) -> GPT:
    """A copy of `model` holding the dequantised weights of `exported`; QAT off."""
    clone = copy.deepcopy(model)
    clone.load_state_dict(import_state_dict(exported))
    clone.set_qat(None)
    return clone


def round_trip(model: GPT, bits: int, policy: QuantPolicy = QuantPolicy()) -> GPT:
    """A copy of `model` whose weights went through export at `bits` and back; QAT off."""
    return load_export(model, export(model, bits, policy))


def grid_probe(model: GPT, own_bits: int, policy: QuantPolicy = QuantPolicy()) -> dict:
    """Distance of every block matrix to the INT6 grid and to the run's own grid (with the policy's scale floor)."""
    per_matrix = {}
    params = dict(model.named_parameters())
    own = own_bits if is_quantised(own_bits) else FP16_PROBE_BITS
    for name in model.quantized_weight_names():
        w = params[name]
        per_matrix[name] = {
            "int6": grid_distance(w, 6, policy.min_scale(6)),
            "own": grid_distance(w, own, policy.min_scale(own)),
        }
    n = len(per_matrix)
    return {
        "int6_mean": sum(v["int6"] for v in per_matrix.values()) / n,
        "own_mean": sum(v["own"] for v in per_matrix.values()) / n,
        "per_matrix": per_matrix,
    }
