"""Weight-only int8: store each linear layer's weights as int8 with one scale per output row.

A decode step then reads a quarter of float32's bytes for those weights. The matrix product runs in the
activations' dtype through torch's `_weight_int8pack_mm` kernel (as gpt-fast's int8 path does), which exists
on some devices only; `int8_weight_only_support` says whether this one has it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

MATVEC_ROWS = 4  # up to this many rows go through the int8 kernel, which works row by row: a 257-token prefill
# took 32 s through it on 2 CPU cores; more rows go through one dequantized float32 matrix product instead


class Int8WeightOnlyLinear(nn.Module):
    """A linear layer whose weight is int8 (out, in) with per-row scales (out,); activations stay float."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()  # (out, in)
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,)
        self.register_buffer(
            "weight", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        )  # (out, in)
        self.register_buffer("scales", scales.to(linear.weight.dtype))  # (out,)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).contiguous()  # (N, in)
        if flat.shape[0] > MATVEC_ROWS:  # many rows (a prefill): one dequantized matrix product is far faster
            weight = self.weight.float() * self.scales.float()[:, None]  # (out, in); float32: CPUs without
            out = (flat.float() @ weight.T).to(x.dtype)  # (N, out)      a bfloat16 matmul unit run it fastest
        else:  # decode: the int8 kernel reads a quarter of the bytes
            out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales.to(x.dtype))  # (N, out)
        out = out.reshape(*x.shape[:-1], out.shape[-1])  # (..., out)
        return out + self.bias if self.bias is not None else out


def int8_weight_only_support(device: torch.device) -> str | None:
    """None when this device runs the int8 weight-only kernel; otherwise the reason it cannot."""
    try:
        x = torch.ones(1, 32, device=device)  # (1, in)
        weight = torch.ones(8, 32, dtype=torch.int8, device=device)  # (out, in)
        torch.ops.aten._weight_int8pack_mm(x, weight, torch.ones(8, device=device))
        return None
    except (RuntimeError, NotImplementedError, AttributeError) as err:
        return (
            f"torch {torch.__version__} has no int8 weight-only kernel for {device.type} "
            f"({str(err).splitlines()[0][:120]})"
        )


def quantize_int8_weight_only(model: nn.Module) -> nn.Module:
    """A copy of the model with every linear layer (the output head included) stored as int8."""
    quantized = copy.deepcopy(model)
    for parent in list(quantized.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8WeightOnlyLinear(child))
    return quantized


def weight_bytes_read_per_token(model: nn.Module) -> int:
    """Bytes of weights one decode step reads: every tensor once, but an input embedding only its one row.

    So does a table looked up by position (a module with `reads_one_row`, like the static decoder's RotaryTable).

    An embedding tied to the output head (SmolLM2's is) is read whole by the head, so it counts whole.
    """
    read_by_linear = {  # nn.Linear or any replacement of it (int8, row-sum): every module with a weight but embeddings
        id(module.weight)
        for module in model.modules()
        if not isinstance(module, nn.Embedding) and isinstance(getattr(module, "weight", None), torch.Tensor)
    }
    total, seen = 0, set()
    for module in model.modules():
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            looked_up = isinstance(module, nn.Embedding) or getattr(module, "reads_one_row", False)
            if looked_up and id(tensor) not in read_by_linear:
                total += tensor.shape[-1] * tensor.element_size()  # one row per token
            else:
                total += tensor.numel() * tensor.element_size()
    return total
