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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

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

    def run_sequence(
        self,
        x_preactivations: Tensor,
        state: ConvLSTMCellState | None,
        weight_h: Tensor,
        h_mask: Tensor | None = None,
    ) -> tuple[Tensor, ConvLSTMCellState]:
        """Every step of a sequence given its X parts ``(B, T, 4·hidden, H, W)``: returns ``h`` at
        every step ``(B, T, hidden, H, W)`` and the last ``(h, c)``.

        Without a gate norm the loop runs as one autograd node (``_FusedSequence``: two
        convolutions per step, weight gradients batched over the steps); with one, or while an
        exporter traces the model, step by step through :meth:`recurrence`. The fused loop
        computes in the X part's dtype (under autocast, the dtype its convolution produced).
        """
        if self.norm is not None or _tracing():
            outputs = []
            for x_t in x_preactivations.unbind(1):
                state = self.recurrence(x_t, state, weight_h, h_mask)
                outputs.append(state[0])
            return torch.stack(outputs, dim=1), state
        dtype = x_preactivations.dtype
        h0, c0 = (None, None) if state is None else (state[0].to(dtype), state[1].to(dtype))
        with torch.autocast(x_preactivations.device.type, enabled=False):
            outputs, c = _FusedSequence.apply(
                x_preactivations, h0, c0, weight_h.to(dtype), self.conv_peephole_if.weight.to(dtype),
                self.conv_peephole_o.weight.to(dtype), h_mask, self.padding,
            )
        return outputs, (outputs[:, -1], c)

    def _update(self, preactivations: Tensor, c: Tensor | None) -> ConvLSTMCellState:
        """New ``(h, c)`` from ``W_x*X + W_h*H + b`` ``(B, 4·hidden, H, W)`` and ``C_{t-1}`` (``None``: zeros)."""
        if self.norm is not None:
            preactivations = self.norm(preactivations)
        peephole_if = self.conv_peephole_if(c) if c is not None else None
        *_, output_pre, c_next = _cell_update(preactivations, c, peephole_if)
        h_next = torch.sigmoid(output_pre + self.conv_peephole_o(c_next)) * torch.tanh(c_next)
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


def _tracing() -> bool:
    """Whether an exporter traces the model: the fused loop is an autograd ``Function`` that
    neither ``torch.export`` nor TorchScript tracing records, so they get the step-by-step loop
    (the same equation)."""
    return torch.compiler.is_exporting() or torch.jit.is_tracing()


def _cell_update(
    preactivations: Tensor, c: Tensor | None, peephole_if: Tensor | None
) -> tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor]:
    """The cell update of equation 1 from the gate pre-activations ``(B, 4·hidden, H, W)``
    (``W_x*X + W_h*H + b``, normalised if the cell has a norm), ``C_{t-1}`` (``None``: zeros,
    whose peepholes and forget term vanish) and its i/f peepholes ``W_ci*C, W_cf*C``
    ``(B, 2·hidden, H, W)``. Returns the input gate, the forget gate (``None`` without
    ``C_{t-1}``), the candidate ``tanh(…)``, the output gate's pre-activation without its
    peephole, and ``C_t``.
    """
    input_pre, forget_pre, candidate_pre, output_pre = preactivations.chunk(len(GATE_ORDER), dim=1)
    candidate = torch.tanh(candidate_pre)
    if c is None:
        input_gate = torch.sigmoid(input_pre)
        return input_gate, None, candidate, output_pre, input_gate * candidate
    peephole_i, peephole_f = peephole_if.chunk(2, dim=1)
    input_gate = torch.sigmoid(input_pre + peephole_i)
    forget_gate = torch.sigmoid(forget_pre + peephole_f)
    return input_gate, forget_gate, candidate, output_pre, forget_gate * c + input_gate * candidate


def _conv_backward(
    grad_output: Tensor, input: Tensor, weight: Tensor, padding: int, wanted: tuple[bool, bool]
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of ``conv2d(input, weight, padding=padding)`` (stride 1, no bias) with respect
    to ``input`` and ``weight``, each computed only where ``wanted``."""
    grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad_output, input, weight, None, [1, 1], [padding, padding], [1, 1], False, [0, 0], 1, [*wanted, False]
    )
    return grad_input, grad_weight


def _sigmoid_backward(grad: Tensor, sigmoid: Tensor) -> Tensor:
    """``grad · σ'`` from ``σ = sigmoid(z)``: ``grad · σ · (1 − σ)`` in one kernel."""
    return torch.ops.aten.sigmoid_backward(grad, sigmoid)


def _tanh_backward(grad: Tensor, tanh: Tensor) -> Tensor:
    """``grad · tanh'`` from ``tanh = tanh(z)``: ``grad · (1 − tanh²)`` in one kernel."""
    return torch.ops.aten.tanh_backward(grad, tanh)


class _FusedSequence(torch.autograd.Function):
    """The time loop of one ConvLSTM layer without gate norm, with a hand-written backward.

    Forward, per step: ``W_h*H_{t-1}``, then, after the cell update, one convolution over ``C_t``
    that gives both the output gate's peephole of step ``t`` and the i/f peepholes of step
    ``t + 1`` (the two peephole weights concatenated): two convolutions per step, not three.
    Backward, per step, only what flows back in time (the gradients of ``H_{t-1}`` and
    ``C_{t-1}``); each weight's gradient is then one convolution over the ``B·T`` frames of all
    steps. ``H`` and ``C`` of every step are written into time-major buffers ``(T + 1, B, hidden,
    H, W)`` (slot 0 the carried state, slot ``t + 1`` step ``t``), and the gradients into
    ``(T, B, …)`` ones, so that those batched convolutions read them without copies.
    """

    # saved at every step; the forget gate only at the steps that have a C_{t-1}
    STEP_GATES = ("input", "candidate", "output", "tanh_cell")

    @staticmethod
    def forward(
        ctx: Any,
        x_preactivations: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        weight_h: Tensor,
        weight_peephole_if: Tensor,
        weight_peephole_o: Tensor,
        h_mask: Tensor | None,
        padding: int,
    ) -> tuple[Tensor, Tensor]:
        hidden = weight_peephole_o.shape[0]
        batch, steps, _, *grid = x_preactivations.shape
        weight_peepholes = torch.cat([weight_peephole_o, weight_peephole_if])
        hs = x_preactivations.new_empty((steps + 1, batch, hidden, *grid))
        cells = torch.empty_like(hs)
        gates: dict[str, list[Tensor]] = {name: [] for name in _FusedSequence.STEP_GATES}
        forgets: list[Tensor] = []
        carried = h0 is not None
        peephole_if = None
        if carried:
            hs[0].copy_(h0)
            cells[0].copy_(c0)
            peephole_if = F.conv2d(cells[0], weight_peephole_if, padding=padding)
        for t in range(steps):
            preactivations = x_preactivations[:, t]
            c_prev = cells[t] if carried or t > 0 else None
            if c_prev is not None:
                h_in = hs[t] * h_mask if h_mask is not None else hs[t]
                preactivations = preactivations + F.conv2d(h_in, weight_h, padding=padding)
            input_gate, forget_gate, candidate, output_pre, c = _cell_update(preactivations, c_prev, peephole_if)
            cells[t + 1].copy_(c)
            if t == steps - 1:
                peephole_o = F.conv2d(cells[t + 1], weight_peephole_o, padding=padding)
            else:
                peepholes = F.conv2d(cells[t + 1], weight_peepholes, padding=padding)
                peephole_o, peephole_if = peepholes.split([hidden, 2 * hidden], dim=1)
            output_gate = torch.sigmoid(output_pre + peephole_o)
            tanh_cell = torch.tanh(cells[t + 1])
            torch.mul(output_gate, tanh_cell, out=hs[t + 1])
            for name, value in zip(_FusedSequence.STEP_GATES, (input_gate, candidate, output_gate, tanh_cell)):
                gates[name].append(value)
            if forget_gate is not None:
                forgets.append(forget_gate)
        ctx.padding, ctx.carried = padding, carried
        ctx.save_for_backward(weight_h, weight_peephole_if, weight_peephole_o, h_mask, hs, cells,
                              *(value for name in _FusedSequence.STEP_GATES for value in gates[name]), *forgets)
        return hs[1:].transpose(0, 1).contiguous(), cells[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_outputs: Tensor | None, grad_last_cell: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_h, weight_peephole_if, weight_peephole_o, h_mask, hs, cells, *flat = ctx.saved_tensors
        padding, carried = ctx.padding, ctx.carried
        slots, batch, hidden, *grid = cells.shape
        steps = slots - 1
        first_carried = 0 if carried else 1  # the first step whose H_{t-1} and C_{t-1} are not zeros
        gates = {name: flat[index * steps:(index + 1) * steps] for index, name in enumerate(_FusedSequence.STEP_GATES)}
        forgets = flat[len(gates) * steps:]
        weight_peepholes = torch.cat([weight_peephole_o, weight_peephole_if])
        grad_preactivations = hs.new_empty((steps, batch, 4 * hidden, *grid))
        grad_peepholes = hs.new_empty((steps, batch, 3 * hidden, *grid))  # of each step's convolution over C_t
        grad_h_next: Tensor | None = None  # reaches H_t through step t + 1's gates
        grad_c_next: Tensor | None = grad_last_cell  # reaches C_t through step t + 1's cell update
        grad_if_next: Tensor | None = None  # of step t + 1's i/f peephole outputs, which read C_t
        for t in reversed(range(steps)):
            output_gate, tanh_cell = gates["output"][t], gates["tanh_cell"][t]
            input_gate, candidate = gates["input"][t], gates["candidate"][t]
            grad_h = grad_outputs[:, t] if grad_outputs is not None else torch.zeros_like(tanh_cell)
            if grad_h_next is not None:
                grad_h = grad_h + grad_h_next
            grad_output_pre = _sigmoid_backward(grad_h * tanh_cell, output_gate)
            grad_c = _tanh_backward(grad_h * output_gate, tanh_cell)
            if grad_c_next is not None:
                grad_c = grad_c + grad_c_next
            if grad_if_next is None:
                grad_peepholes[t, :, :hidden] = grad_output_pre
                grad_peepholes[t, :, hidden:] = 0  # the last step's convolution has no i/f peephole part
                grad_c = grad_c + _conv_backward(grad_output_pre, cells[t + 1], weight_peephole_o, padding,
                                                 (True, False))[0]
            else:
                torch.cat([grad_output_pre, grad_if_next], dim=1, out=grad_peepholes[t])
                grad_c = grad_c + _conv_backward(grad_peepholes[t], cells[t + 1], weight_peepholes, padding,
                                                 (True, False))[0]
            grad_input_pre = _sigmoid_backward(grad_c * candidate, input_gate)
            grad_candidate_pre = _tanh_backward(grad_c * input_gate, candidate)
            if t >= first_carried:
                forget_gate = forgets[t - first_carried]
                grad_forget_pre = _sigmoid_backward(grad_c * cells[t], forget_gate)
                grad_c_next = grad_c * forget_gate
                grad_if_next = torch.cat([grad_input_pre, grad_forget_pre], dim=1)
            else:
                grad_forget_pre = torch.zeros_like(grad_input_pre)
                grad_c_next = grad_if_next = None
            torch.cat([grad_input_pre, grad_forget_pre, grad_candidate_pre, grad_output_pre], dim=1,
                      out=grad_preactivations[t])
            if t >= first_carried:
                grad_h_next = _conv_backward(grad_preactivations[t], hs[t], weight_h, padding, (True, False))[0]
                if h_mask is not None:
                    grad_h_next = grad_h_next * h_mask

        needs = ctx.needs_input_grad
        grad_h0 = grad_c0 = grad_weight_h = grad_weight_if = grad_weight_o = None
        grad_weight_if_c0 = None
        if carried:
            grad_h0 = grad_h_next
            grad_c0, grad_weight_if_c0 = _conv_backward(grad_if_next, cells[0], weight_peephole_if, padding,
                                                        (True, needs[4]))
            grad_c0 = grad_c0 + grad_c_next
        if needs[3]:
            h_in = hs[first_carried:steps]
            if h_mask is not None:
                h_in = h_in * h_mask
            grad_weight_h = torch.zeros_like(weight_h) if first_carried == steps else _conv_backward(
                grad_preactivations[first_carried:].flatten(0, 1), h_in.flatten(0, 1), weight_h, padding, (False, True),
            )[1]
        if needs[4] or needs[5]:
            grad_weight_peepholes = _conv_backward(
                grad_peepholes.flatten(0, 1), cells[1:].flatten(0, 1), weight_peepholes, padding, (False, True),
            )[1]
            grad_weight_o, grad_weight_if = grad_weight_peepholes.split([hidden, 2 * hidden])
            if grad_weight_if_c0 is not None:
                grad_weight_if = grad_weight_if + grad_weight_if_c0
        return (grad_preactivations.transpose(0, 1), grad_h0, grad_c0, grad_weight_h, grad_weight_if, grad_weight_o,
                None, None)


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
        x_preactivations = cell.input_preactivations(x.flatten(0, 1), weight_x).unflatten(0, (batch, steps))
        h_mask = None
        if self.training and self.recurrent_dropout > 0:
            h_mask = self._recurrent_mask(x_preactivations[:, 0], cell.hidden_channels)
        if reverse:
            x_preactivations = x_preactivations.flip(1)
        outputs, state = cell.run_sequence(x_preactivations, state, weight_h, h_mask)
        return (outputs.flip(1) if reverse else outputs), state

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
