"""Per-gate reference ConvLSTM: equation 1 written out term by term. For tests and benchmarks only.

Not part of the public API and not meant for training. Every term of equation 1 is its own
``nn.Conv2d`` (``w_xi``, ``w_hi``, ``w_ci``, …), the state starts as real zeros and nothing is
precomputed or fused. ``tests/models/test_convlstm.py`` checks :mod:`restaurant_action.models.convlstm`
against it and ``benchmarks/convlstm.py`` times both. :meth:`ReferenceConvLSTMCell.load_fused`
copies the weights of a fused :class:`~restaurant_action.models.convlstm.ConvLSTMCell`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from restaurant_action.models.convlstm import GATE_ORDER, ConvLSTM, ConvLSTMCell, _gate_norm

_GATE_NAMES = ("i", "f", "c", "o")


class ReferenceConvLSTMCell(nn.Module):
    """Equation 1 with one convolution per weight: ``(B, input, H, W)`` → ``(h, (h, c))``, each ``(B, hidden, H, W)``.

    The biases ``b_i, b_f, b_c, b_o`` are those of ``w_xi, w_xf, w_xc, w_xo``. With ``norm``,
    each gate's ``W_x*X + W_h*H`` goes through its own GroupNorm (whose shift is then ``b``).
    """

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        bias: bool = True,
        norm: str | None = None,
    ) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        padding = kernel_size // 2

        def conv(channels: int, with_bias: bool) -> nn.Conv2d:
            return nn.Conv2d(channels, hidden_channels, kernel_size, padding=padding, bias=with_bias)

        x_bias, hidden = bias and norm is None, hidden_channels
        self.w_xi, self.w_hi, self.w_ci = conv(input_channels, x_bias), conv(hidden, False), conv(hidden, False)
        self.w_xf, self.w_hf, self.w_cf = conv(input_channels, x_bias), conv(hidden, False), conv(hidden, False)
        self.w_xc, self.w_hc = conv(input_channels, x_bias), conv(hidden, False)
        self.w_xo, self.w_ho, self.w_co = conv(input_channels, x_bias), conv(hidden, False), conv(hidden, False)
        fused_norm = _gate_norm(norm, hidden_channels)
        self.norms = None if fused_norm is None else nn.ModuleList(
            nn.GroupNorm(fused_norm.num_groups // len(GATE_ORDER), hidden_channels) for _ in GATE_ORDER
        )

    def _pre(self, gate: int, x: Tensor, h: Tensor) -> Tensor:
        name = _GATE_NAMES[gate]
        pre = getattr(self, f"w_x{name}")(x) + getattr(self, f"w_h{name}")(h)
        return pre if self.norms is None else self.norms[gate](pre)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, h_mask: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One step; ``state`` ``None`` means zeros; ``h_mask`` multiplies ``H_{t-1}`` inside the gates."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
            state = (zeros, zeros)
        h, c = state
        if h_mask is not None:
            h = h * h_mask
        i = torch.sigmoid(self._pre(0, x, h) + self.w_ci(c))
        f = torch.sigmoid(self._pre(1, x, h) + self.w_cf(c))
        c_next = f * c + i * torch.tanh(self._pre(2, x, h))
        o = torch.sigmoid(self._pre(3, x, h) + self.w_co(c_next))
        h_next = o * torch.tanh(c_next)
        return h_next, (h_next, c_next)

    @torch.no_grad()
    def load_fused(self, fused: ConvLSTMCell) -> ReferenceConvLSTMCell:
        """Copy the weights of ``fused`` into the per-gate convolutions; returns ``self``."""
        hidden, inputs = fused.hidden_channels, fused.input_channels
        for gate, name in enumerate(_GATE_NAMES):
            rows = slice(gate * hidden, (gate + 1) * hidden)
            getattr(self, f"w_x{name}").weight.copy_(fused.conv_xh.weight[rows, :inputs])
            getattr(self, f"w_h{name}").weight.copy_(fused.conv_xh.weight[rows, inputs:])
            if fused.conv_xh.bias is not None:
                getattr(self, f"w_x{name}").bias.copy_(fused.conv_xh.bias[rows])
            if self.norms is not None:
                self.norms[gate].weight.copy_(fused.norm.weight[rows])
                self.norms[gate].bias.copy_(fused.norm.bias[rows])
        self.w_ci.weight.copy_(fused.conv_peephole_if.weight[:hidden])
        self.w_cf.weight.copy_(fused.conv_peephole_if.weight[hidden:])
        self.w_co.weight.copy_(fused.conv_peephole_o.weight)
        return self


class ReferenceConvLSTM(nn.Module):
    """Stacked (optionally bidirectional) sequence loop over :class:`ReferenceConvLSTMCell`, batch first, no dropout.

    ``forward(x (B, T, C, H, W), state, h_masks)`` → ``(y (B, T, C', H, W), [(h, c)] per layer)``,
    the same contract as :class:`~restaurant_action.models.convlstm.ConvLSTM`; ``h_masks`` maps
    ``(layer, direction)`` to a recurrent-dropout mask used at every step.
    """

    def __init__(
        self,
        input_channels: int,
        hidden_channels: Sequence[int],
        kernel_size: int = 3,
        bidirectional: bool = False,
        norm: str | None = None,
    ) -> None:
        super().__init__()
        directions = 2 if bidirectional else 1
        inputs = [input_channels] + [directions * h for h in hidden_channels[:-1]]
        self.directions = nn.ModuleList(
            nn.ModuleList(
                ReferenceConvLSTMCell(c_in, c_hidden, kernel_size, norm=norm)
                for c_in, c_hidden in zip(inputs, hidden_channels)
            )
            for _ in range(directions)
        )

    @classmethod
    def from_fused(cls, fused: ConvLSTM) -> ReferenceConvLSTM:
        """A reference with the weights of ``fused`` (kernel size and norm taken from its cells)."""
        cell = fused.cells[0]
        norm = None if cell.norm is None else ("layer" if cell.norm.num_groups == len(GATE_ORDER) else "group")
        reference = cls(fused.input_channels, fused.hidden_channels, cell.kernel_size, fused.bidirectional, norm)
        reference.to(cell.conv_xh.weight.dtype)
        fused_directions = [fused.cells] if fused.cells_reverse is None else [fused.cells, fused.cells_reverse]
        for cells, fused_cells in zip(reference.directions, fused_directions):
            for reference_cell, fused_cell in zip(cells, fused_cells):
                reference_cell.load_fused(fused_cell)
        return reference

    def forward(
        self,
        x: Tensor,
        state: list[tuple[Tensor, Tensor]] | None = None,
        h_masks: dict[tuple[int, int], Tensor] | None = None,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        final = []
        for layer in range(len(self.directions[0])):
            outputs, finals = [], []
            for direction, cells in enumerate(self.directions):
                cell_state = state[layer] if state is not None and direction == 0 else None
                mask = None if h_masks is None else h_masks.get((layer, direction))
                order = range(x.shape[1]) if direction == 0 else reversed(range(x.shape[1]))
                hs = {}
                for t in order:
                    hs[t], cell_state = cells[layer](x[:, t], cell_state, mask)
                outputs.append(torch.stack([hs[t] for t in range(x.shape[1])], dim=1))
                finals.append(cell_state)
            x = torch.cat(outputs, dim=2)
            final.append((torch.cat([s[0] for s in finals], 1), torch.cat([s[1] for s in finals], 1)))
        return x, final
