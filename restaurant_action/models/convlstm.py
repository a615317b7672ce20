"""ConvLSTM with convolutional peepholes (equation 1 of the study), fused for speed.

Equation 1 (``*`` convolution, ``∘`` Hadamard product)::

    i_t = σ(W_xi*X_t + W_hi*H_{t-1} + W_ci*C_{t-1} + b_i)
    f_t = σ(W_xf*X_t + W_hf*H_{t-1} + W_cf*C_{t-1} + b_f)
    C_t = f_t∘C_{t-1} + i_t∘tanh(W_xc*X_t + W_hc*H_{t-1} + b_c)
    o_t = σ(W_xo*X_t + W_ho*H_{t-1} + W_co*C_t + b_o)
    H_t = o_t∘tanh(C_t)

Fused form, the same equation with fewer, larger convolutions:

- ``conv_xh`` is one convolution over ``cat(X_t, H_{t-1})`` with ``4 * hidden`` outputs: the
  pre-activations of i, f, the candidate and o, in that order (``GATE_ORDER``), biases included.
  By linearity it splits into an X part and an H part; :class:`ConvLSTM` computes the X part of
  all T frames in one batched convolution before the time loop and runs only the H part per step.
- ``conv_peephole_if`` is one convolution over ``C_{t-1}`` with ``2 * hidden`` outputs: the
  peepholes of i and f only. The candidate has no cell term.
- ``conv_peephole_o`` is the output gate's peephole, applied to ``C_t`` after the cell update.

With ``norm`` set, the X-and-H pre-activations of every gate are normalised before the
peepholes are added, ``σ(N(W_x*X + W_h*H) + W_c*C)``, and the biases ``b`` are the
normalisation's shift (the convolution then has none).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GATE_ORDER = ("input", "forget", "candidate", "output")
NORMS = ("group", "layer")
GROUPS_PER_GATE = 8

ConvLSTMCellState = tuple[Tensor, Tensor]
ConvLSTMState = list[ConvLSTMCellState]


def _gate_norm(norm: str | None, hidden_channels: int) -> nn.GroupNorm | None:
    """The normalisation of the ``4 * hidden_channels`` gate pre-activations; no group straddles two gates.

    ``"layer"``: one group per gate (LayerNorm over the gate's channels and pixels);
    ``"group"``: ``gcd(hidden_channels, 8)`` groups per gate.
    """
    if norm is None:
        return None
    if norm == "layer":
        groups_per_gate = 1
    elif norm == "group":
        groups_per_gate = math.gcd(hidden_channels, GROUPS_PER_GATE)
    else:
        raise ValueError(f"norm must be None or one of {NORMS}, got {norm!r}")
    return nn.GroupNorm(len(GATE_ORDER) * groups_per_gate, len(GATE_ORDER) * hidden_channels)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step (equation 1), fused: ``(B, input_channels, H, W) -> (B, hidden_channels, H, W)``.

    ``forward(x, state)`` takes ``x (B, input_channels, H, W)`` and ``state = (h, c)``, each
    ``(B, hidden_channels, H, W)``, or ``None`` for zeros; it returns ``(h, (h, c))``.
    Convolutions use 'same' padding, so the spatial size is kept. The forget-gate bias starts at 1.
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
        if input_channels < 1 or hidden_channels < 1:
            raise ValueError(f"channels must be >= 1, got input {input_channels}, hidden {hidden_channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1 (for 'same' padding), got {kernel_size}")
        if norm is not None and not bias:
            raise ValueError("with norm set the gate biases are the normalisation's shift: bias=False is not supported")
        self.input_channels = input_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        hidden, padding = hidden_channels, self.padding
        self.conv_xh = nn.Conv2d(
            input_channels + hidden, len(GATE_ORDER) * hidden, kernel_size, padding=padding, bias=bias and norm is None
        )
        self.conv_peephole_if = nn.Conv2d(hidden, 2 * hidden, kernel_size, padding=padding, bias=False)
        self.conv_peephole_o = nn.Conv2d(hidden, hidden, kernel_size, padding=padding, bias=False)
        self.norm = _gate_norm(norm, hidden_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default weights for ``conv_xh``, zero peepholes; gate biases 0 except the forget
        gate's, which start at 1.

        The peepholes start at zero because, with a convolution's default initialisation, a
        peephole feeds the cell back into its own forget and input gates: on long clips some
        cells run away (``|C|`` growing by about 1 per step, ``tanh(C)`` saturated, no gradient
        through it; measured in docs/recurrent.md). From zero they learn only what the loss asks.
        """
        self.conv_xh.reset_parameters()
        nn.init.zeros_(self.conv_peephole_if.weight)
        nn.init.zeros_(self.conv_peephole_o.weight)
        if self.norm is not None:
            self.norm.reset_parameters()
        gate_bias = self.conv_xh.bias if self.norm is None else self.norm.bias
        if gate_bias is not None:
            with torch.no_grad():
                gate_bias.zero_()
                forget = GATE_ORDER.index("forget")
                gate_bias[forget * self.hidden_channels:(forget + 1) * self.hidden_channels] = 1.0

    def split_weight(self) -> tuple[Tensor, Tensor]:
        """``conv_xh.weight`` as its X part ``(4·hidden, input, k, k)`` and H part ``(4·hidden, hidden, k, k)``."""
        weight = self.conv_xh.weight
        return weight[:, :self.input_channels].contiguous(), weight[:, self.input_channels:].contiguous()

    def input_preactivations(self, x: Tensor, weight_x: Tensor) -> Tensor:
        """``W_x*X + b`` for every gate: ``x (N, input, H, W) -> (N, 4·hidden, H, W)``; ``N`` may be ``B·T``."""
        return F.conv2d(x, weight_x, self.conv_xh.bias, padding=self.padding)

    def recurrence(
        self,
        x_preactivations: Tensor,
        state: ConvLSTMCellState | None,
        weight_h: Tensor,
        h_mask: Tensor | None = None,
    ) -> ConvLSTMCellState:
        """One step given the X part ``(B, 4·hidden, H, W)`` from :meth:`input_preactivations`.

        ``weight_h`` is the H part of :meth:`split_weight`; ``h_mask (B, hidden, H, W)``, if
        given, multiplies ``H_{t-1}`` where it enters the gates (recurrent dropout). A ``None``
        state stands for zeros and skips the convolutions of zeros. Returns ``(h, c)``.
        """
        if state is None:
            return self._update(x_preactivations, None)
        h, c = state
        if h_mask is not None:
            h = h * h_mask
        return self._update(x_preactivations + F.conv2d(h, weight_h, padding=self.padding), c)

    def _update(self, preactivations: Tensor, c: Tensor | None) -> ConvLSTMCellState:
        """New ``(h, c)`` from ``W_x*X + W_h*H + b`` ``(B, 4·hidden, H, W)`` and ``C_{t-1}`` (``None``: zeros)."""
        if self.norm is not None:
            preactivations = self.norm(preactivations)
        input_gate, forget_gate, candidate, output_gate = preactivations.chunk(len(GATE_ORDER), dim=1)
        if c is None:
            c_next = torch.sigmoid(input_gate) * torch.tanh(candidate)
        else:
            peephole_i, peephole_f = self.conv_peephole_if(c).chunk(2, dim=1)
            c_next = (
                torch.sigmoid(forget_gate + peephole_f) * c
                + torch.sigmoid(input_gate + peephole_i) * torch.tanh(candidate)
            )
        h_next = torch.sigmoid(output_gate + self.conv_peephole_o(c_next)) * torch.tanh(c_next)
        return h_next, c_next

    def forward(self, x: Tensor, state: ConvLSTMCellState | None = None) -> tuple[Tensor, ConvLSTMCellState]:
        """``x (B, input, H, W)``, ``state`` ``(h, c)`` each ``(B, hidden, H, W)`` or ``None`` → ``(h, (h, c))``."""
        if x.dim() != 4 or x.shape[1] != self.input_channels:
            raise ValueError(f"expected x of shape (B, {self.input_channels}, H, W), got {tuple(x.shape)}")
        if state is None:
            h, c = self._update(self.input_preactivations(x, self.split_weight()[0]), None)
        else:
            _check_cell_state(state, (x.shape[0], self.hidden_channels, *x.shape[2:]), "state")
            h, c = self._update(self.conv_xh(torch.cat([x, state[0]], dim=1)), state[1])
        return h, (h, c)


def _check_cell_state(state: Sequence[Tensor], shape: tuple[int, ...], name: str) -> None:
    """Raise a ValueError unless ``state`` is a pair ``(h, c)`` of tensors of ``shape``."""
    if len(state) != 2:
        raise ValueError(f"{name} must be a pair (h, c), got {len(state)} items")
    for label, tensor in zip(("h", "c"), state):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name}: {label} has shape {tuple(tensor.shape)}, expected {shape}")


class ConvLSTM(nn.Module):
    """Stacked, optionally bidirectional ConvLSTM over sequences, with the API of ``nn.LSTM``.

    ``forward(x, state=None)`` takes ``x (B, T, input_channels, H, W)`` (``(T, B, …)`` when
    ``batch_first=False``) and returns ``(y, state)``: ``y (B, T, C', H, W)`` is the last layer's
    ``h`` at every step (``C' = hidden`` or ``2·hidden`` when bidirectional) and ``state`` is a
    list with one ``(h, c)`` per layer, each ``(B, hidden_l, H, W)``, after the last step. Pass it
    back to carry the sequence on; :meth:`reset_state` zeroes lanes that start a new clip and
    :meth:`detach_state` cuts the graph (truncated BPTT)::

        state = None
        for frames, reset in steps:            # frames (B, T, C, H, W), reset (B,) bool
            state = lstm.reset_state(state, reset)
            y, state = lstm(frames, state)
            ...
            state = lstm.detach_state(state)

    ``hidden_channels`` is one int for every layer or a list with one per layer (then
    ``num_layers`` defaults to its length). ``dropout`` acts on the outputs of every layer but
    the last; ``recurrent_dropout`` multiplies ``H_{t-1}`` where it enters the gates by one mask
    per sequence (per forward call, layer and direction), the same at every step. Both only in
    training mode. A bidirectional ConvLSTM only runs on whole, in-memory sequences: its final
    state (both directions concatenated on channels) is returned for information, but passing a
    state in, resetting or detaching one raises a ValueError.
    """

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int | Sequence[int],
        kernel_size: int = 3,
        num_layers: int | None = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        bidirectional: bool = False,
        norm: str | None = None,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(hidden_channels, int):
            layers = 1 if num_layers is None else num_layers
            hidden = [hidden_channels] * layers
        else:
            hidden = list(hidden_channels)
            if num_layers is not None and num_layers != len(hidden):
                raise ValueError(f"num_layers={num_layers} but {len(hidden)} hidden_channels were given")
        if not hidden:
            raise ValueError("num_layers must be >= 1")
        for name, p in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        if dropout > 0 and len(hidden) == 1:
            warnings.warn("dropout acts between layers: with num_layers=1 it has no effect", stacklevel=2)
        self.input_channels = input_channels
        self.hidden_channels = hidden
        self.num_layers = len(hidden)
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.bidirectional = bidirectional
        self.batch_first = batch_first
        directions = 2 if bidirectional else 1
        inputs = [input_channels] + [directions * h for h in hidden[:-1]]
        self.cells = nn.ModuleList(
            ConvLSTMCell(c_in, c_hidden, kernel_size, norm=norm) for c_in, c_hidden in zip(inputs, hidden)
        )
        self.cells_reverse = nn.ModuleList(
            ConvLSTMCell(c_in, c_hidden, kernel_size, norm=norm) for c_in, c_hidden in zip(inputs, hidden)
        ) if bidirectional else None

    @property
    def output_channels(self) -> int:
        """Channels of ``y``: the last layer's hidden channels, doubled when bidirectional."""
        return self.hidden_channels[-1] * (2 if self.bidirectional else 1)

    def forward(self, x: Tensor, state: ConvLSTMState | None = None) -> tuple[Tensor, ConvLSTMState]:
        """``x (B, T, input, H, W)`` and an optional carried state → ``(y (B, T, C', H, W), state)``."""
        if x.dim() != 5:
            raise ValueError(f"expected x of shape {self._layout(self.input_channels)}, got {tuple(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)
        batch, steps, channels, height, width = x.shape
        if channels != self.input_channels:
            raise ValueError(f"expected x of shape {self._layout(self.input_channels)}, got {tuple(x.shape)}")
        if steps == 0:
            raise ValueError("x holds no time step (T = 0)")
        if state is not None:
            self._check_carry("passing a state")
            if len(state) != self.num_layers:
                raise ValueError(f"state must hold one (h, c) per layer: {self.num_layers}, got {len(state)}")
            for layer, (layer_state, hidden) in enumerate(zip(state, self.hidden_channels)):
                _check_cell_state(layer_state, (batch, hidden, height, width), f"state[{layer}]")
        final_state: ConvLSTMState = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            layer_state_in = None if state is None else (state[layer][0], state[layer][1])
            y, layer_state = self._run(self.cells[layer], x, layer_state_in, reverse=False)
            if self.cells_reverse is not None:
                y_reverse, reverse_state = self._run(self.cells_reverse[layer], x, None, reverse=True)
                y = torch.cat([y, y_reverse], dim=2)
                layer_state = tuple(torch.cat(pair, dim=1) for pair in zip(layer_state, reverse_state))
            final_state.append(layer_state)
            x = y
        return (x if self.batch_first else x.transpose(0, 1)), final_state

    def _run(
        self, cell: ConvLSTMCell, x: Tensor, state: ConvLSTMCellState | None, reverse: bool
    ) -> tuple[Tensor, ConvLSTMCellState]:
        """One layer, one direction: ``x (B, T, C, H, W)`` → ``(h at every step (B, T, hidden, H, W), last (h, c))``.

        The X part of every step comes from one convolution over the ``B·T`` frames; only the
        H part and the peepholes run inside the time loop.
        """
        batch, steps = x.shape[:2]
        weight_x, weight_h = cell.split_weight()
        x_preactivations = cell.input_preactivations(x.flatten(0, 1), weight_x).unflatten(0, (batch, steps)).unbind(1)
        h_mask = None
        if self.training and self.recurrent_dropout > 0:
            h_mask = self._recurrent_mask(x_preactivations[0], cell.hidden_channels)
        outputs: list[Tensor] = []
        for t in (reversed(range(steps)) if reverse else range(steps)):
            state = cell.recurrence(x_preactivations[t], state, weight_h, h_mask)
            outputs.append(state[0])
        if reverse:
            outputs.reverse()
        return torch.stack(outputs, dim=1), state

    def _recurrent_mask(self, like: Tensor, hidden_channels: int) -> Tensor:
        """One inverted-dropout mask ``(B, hidden, H, W)`` for a whole sequence, values 0 or ``1 / (1 - p)``."""
        keep = 1.0 - self.recurrent_dropout
        shape = (like.shape[0], hidden_channels, *like.shape[2:])
        return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(keep).div_(keep)

    def reset_state(self, state: ConvLSTMState | None, mask: Tensor) -> ConvLSTMState | None:
        """Zero the lanes where ``mask (B,)`` (bool) is true, e.g. lanes that start a new clip.

        Returns a new state (the input is not modified); ``None`` stays ``None``.
        """
        self._check_carry("resetting a state")
        if state is None:
            return None
        if mask.dtype != torch.bool or mask.dim() != 1:
            raise ValueError(f"mask must be a (B,) bool tensor, got {mask.dtype} of shape {tuple(mask.shape)}")
        lanes = mask.view(-1, 1, 1, 1).to(state[0][0].device)
        reset: ConvLSTMState = []
        for layer, (h, c) in enumerate(state):
            if h.shape[0] != mask.shape[0]:
                raise ValueError(f"mask has {mask.shape[0]} lanes but state[{layer}] has {h.shape[0]}")
            reset.append((h.masked_fill(lanes, 0.0), c.masked_fill(lanes, 0.0)))
        return reset

    def detach_state(self, state: ConvLSTMState | None) -> ConvLSTMState | None:
        """The state cut from the autograd graph (truncated BPTT between subsequences); ``None`` stays ``None``."""
        self._check_carry("detaching a state")
        if state is None:
            return None
        return [(h.detach(), c.detach()) for h, c in state]

    def _check_carry(self, action: str) -> None:
        if self.bidirectional:
            raise ValueError(
                f"{action} is not supported by a bidirectional ConvLSTM: it only runs on whole, in-memory "
                "sequences (its backward direction needs the future frames); use bidirectional=False to carry state"
            )

    def _layout(self, channels: int) -> str:
        return f"(B, T, {channels}, H, W)" if self.batch_first else f"(T, B, {channels}, H, W)"
