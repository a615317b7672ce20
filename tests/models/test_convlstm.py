import copy

import pytest
import torch
from torch import nn

from restaurant_action.models._convlstm_reference import ReferenceConvLSTM, ReferenceConvLSTMCell
from restaurant_action.models.convlstm import ConvLSTM, ConvLSTMCell

B, T, C, H, W = 2, 4, 3, 6, 5
TOL = {"atol": 1e-5, "rtol": 1e-5}


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random (biases and norm affine too), so that each one shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.3)
    return module


def _grad_or_zeros(parameter: nn.Parameter) -> torch.Tensor:
    """A parameter's gradient, zeros where it took no part (e.g. a peephole at a single step from zeros)."""
    return parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)


def _reference_cell_grads(fused: ConvLSTMCell, reference: ReferenceConvLSTMCell) -> dict[str, torch.Tensor]:
    """The fused cell's weight gradients mapped onto the per-gate names of ``reference``."""
    grad_cell = copy.deepcopy(fused)
    with torch.no_grad():
        for parameter, original in zip(grad_cell.parameters(), fused.parameters()):
            parameter.copy_(_grad_or_zeros(original))
    mapped = copy.deepcopy(reference).load_fused(grad_cell)
    return dict(mapped.named_parameters())


def _assert_grads_match(fused: ConvLSTM, reference: ReferenceConvLSTM) -> None:
    fused_directions = [fused.cells] if fused.cells_reverse is None else [fused.cells, fused.cells_reverse]
    for reference_cells, fused_cells in zip(reference.directions, fused_directions):
        for reference_cell, fused_cell in zip(reference_cells, fused_cells):
            expected = _reference_cell_grads(fused_cell, reference_cell)
            for name, parameter in reference_cell.named_parameters():
                torch.testing.assert_close(
                    expected[name], _grad_or_zeros(parameter), **TOL, msg=lambda m, n=name: f"{n}: {m}"
                )


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("norm", [None, "layer", "group"])
def test_cell_matches_per_gate_reference_in_outputs_and_gradients(with_state, norm):
    torch.manual_seed(0)
    fused = _randomise(ConvLSTMCell(C, 4, kernel_size=3, norm=norm).double())
    reference = ReferenceConvLSTMCell(C, 4, kernel_size=3, norm=norm).double().load_fused(fused)
    x = torch.randn(B, C, H, W, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, 4, H, W, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, 4, H, W, dtype=torch.float64, requires_grad=True)
    state = (h0, c0) if with_state else None
    h, (h_again, c) = fused(x, state)
    h_ref, (_, c_ref) = reference(x, state)
    assert h is h_again and h.shape == (B, 4, H, W)
    torch.testing.assert_close(h, h_ref, **TOL)
    torch.testing.assert_close(c, c_ref, **TOL)
    weights = torch.randn_like(h), torch.randn_like(c)
    inputs = (x, h0, c0) if with_state else (x,)
    fused_params = tuple(fused.parameters())
    fused_grads = torch.autograd.grad(
        (h * weights[0]).sum() + (c * weights[1]).sum(), inputs + fused_params, allow_unused=True
    )  # without a state the peephole of C_{t-1} = 0 is skipped: its gradient is None, i.e. zero
    fused_grads = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(inputs + fused_params, fused_grads))
    reference_grads = torch.autograd.grad(
        (h_ref * weights[0]).sum() + (c_ref * weights[1]).sum(), inputs + tuple(reference.parameters())
    )
    for fused_grad, reference_grad in zip(fused_grads[:len(inputs)], reference_grads[:len(inputs)]):
        torch.testing.assert_close(fused_grad, reference_grad, **TOL)
    for parameter, grad in zip(fused.parameters(), fused_grads[len(inputs):]):
        parameter.grad = grad
    expected = _reference_cell_grads(fused, reference)
    for (name, _), grad in zip(reference.named_parameters(), reference_grads[len(inputs):]):
        torch.testing.assert_close(expected[name], grad, **TOL)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hidden_channels": 4},
        {"hidden_channels": [5, 4], "kernel_size": 5},
        {"hidden_channels": [4, 4], "kernel_size": 1, "norm": "group"},
        {"hidden_channels": 4, "norm": "layer"},
        {"hidden_channels": [4, 3], "bidirectional": True},
    ],
    ids=["one-layer", "two-layers-k5", "group-norm-k1", "layer-norm", "bidirectional"],
)
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("steps", [T, 1], ids=[f"T{T}", "T1"])
def test_sequence_matches_per_gate_reference_in_outputs_and_gradients(kwargs, with_state, steps):
    if with_state and kwargs.get("bidirectional"):
        pytest.skip("a bidirectional ConvLSTM takes no state")
    torch.manual_seed(1)
    fused = _randomise(ConvLSTM(C, **kwargs).double())
    reference = ReferenceConvLSTM.from_fused(fused)
    x = torch.randn(B, steps, C, H, W, dtype=torch.float64, requires_grad=True)
    state = None
    if with_state:
        state = [
            tuple(torch.randn(B, hidden, H, W, dtype=torch.float64, requires_grad=True) for _ in range(2))
            for hidden in fused.hidden_channels
        ]
    y, final = fused(x, state)
    y_ref, final_ref = reference(x, state)
    assert y.shape == (B, steps, fused.output_channels, H, W)
    torch.testing.assert_close(y, y_ref, **TOL)
    for (h, c), (h_ref, c_ref) in zip(final, final_ref, strict=True):
        torch.testing.assert_close(h, h_ref, **TOL)
        torch.testing.assert_close(c, c_ref, **TOL)

    weights = torch.randn_like(y), torch.randn_like(final[-1][1])
    leaves = [x] + ([tensor for pair in state for tensor in pair] if state else [])
    (y * weights[0]).sum().add((final[-1][1] * weights[1]).sum()).backward()
    fused_leaf_grads = [leaf.grad.clone() for leaf in leaves]
    for leaf in leaves:
        leaf.grad = None
    (y_ref * weights[0]).sum().add((final_ref[-1][1] * weights[1]).sum()).backward()
    for fused_grad, leaf in zip(fused_leaf_grads, leaves):
        torch.testing.assert_close(fused_grad, leaf.grad, **TOL)
    _assert_grads_match(fused, reference)


def test_candidate_has_no_cell_term():
    cell = ConvLSTMCell(C, 4, kernel_size=3)
    assert cell.conv_peephole_if.out_channels == 2 * 4  # i and f blocks only
    assert cell.conv_peephole_o.in_channels == cell.conv_peephole_o.out_channels == 4
    torch.manual_seed(2)
    _randomise(cell)
    with torch.no_grad():
        cell.conv_peephole_if.weight.zero_()  # i and f no longer see C_{t-1}
    x, h0, c0 = torch.randn(1, C, H, W), torch.randn(1, 4, H, W), torch.randn(1, 4, H, W)
    c_poked = c0.clone()
    c_poked[0, 1, 2, 3] += 1.0
    # C_t = f∘C_{t-1} + i∘tanh(candidate): with i and f blind to C_{t-1}, a candidate free of any cell
    # term makes C_t change at the poked element only (a 3×3 cell term would spread it to neighbours).
    _, (_, c) = cell(x, (h0, c0))
    _, (_, c_after) = cell(x, (h0, c_poked))
    changed = (c_after - c).abs() > 1e-7
    assert changed.sum() == 1 and changed[0, 1, 2, 3]


@pytest.mark.parametrize("norm", [None, "group", "layer"])
def test_forget_gate_bias_starts_at_one_and_peepholes_at_zero(norm):
    cell = ConvLSTMCell(C, 6, norm=norm)
    assert torch.all(cell.conv_peephole_if.weight == 0) and torch.all(cell.conv_peephole_o.weight == 0)
    assert cell.conv_xh.weight.abs().sum() > 0
    bias = cell.conv_xh.bias if norm is None else cell.norm.bias
    if norm is not None:
        assert cell.conv_xh.bias is None
    expected = torch.zeros(4 * 6)
    expected[6:12] = 1.0
    torch.testing.assert_close(bias.detach(), expected)


def test_state_carried_over_two_halves_equals_one_pass():
    torch.manual_seed(3)
    lstm = ConvLSTM(C, [4, 5], dropout=0.3, recurrent_dropout=0.3).eval()
    x = torch.randn(B, 6, C, H, W)
    y_whole, state_whole = lstm(x)
    y_first, state = lstm(x[:, :3])
    y_second, state = lstm(x[:, 3:], lstm.detach_state(state))
    torch.testing.assert_close(torch.cat([y_first, y_second], dim=1), y_whole, **TOL)
    for (h, c), (h_whole, c_whole) in zip(state, state_whole):
        torch.testing.assert_close(h, h_whole, **TOL)
        torch.testing.assert_close(c, c_whole, **TOL)


def test_reset_state_zeroes_exactly_the_masked_lanes_and_restarts_them():
    torch.manual_seed(4)
    lstm = ConvLSTM(C, [4, 3]).eval()
    x = torch.randn(3, T, C, H, W)
    _, state = lstm(torch.randn(3, T, C, H, W))
    mask = torch.tensor([True, False, True])
    reset = lstm.reset_state(state, mask)
    for (h, c), (h_reset, c_reset) in zip(state, reset):
        assert h_reset[mask].eq(0).all() and c_reset[mask].eq(0).all()
        assert torch.equal(h_reset[~mask], h[~mask]) and torch.equal(c_reset[~mask], c[~mask])
        assert h.ne(0).any(dim=(1, 2, 3)).all()  # the input state is left untouched
    y_reset, _ = lstm(x, reset)
    y_fresh, _ = lstm(x)
    y_carried, _ = lstm(x, state)
    torch.testing.assert_close(y_reset[mask], y_fresh[mask])
    torch.testing.assert_close(y_reset[~mask], y_carried[~mask])
    assert not torch.allclose(y_carried[mask], y_fresh[mask])
    assert lstm.reset_state(None, mask) is None
    with pytest.raises(ValueError, match="bool"):
        lstm.reset_state(state, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="lanes"):
        lstm.reset_state(state, torch.tensor([True, False]))


def test_detach_state_cuts_the_graph_and_keeps_values():
    lstm = ConvLSTM(C, 4)
    _, state = lstm(torch.randn(B, T, C, H, W, requires_grad=True))
    assert state[0][0].requires_grad
    detached = lstm.detach_state(state)
    assert not any(tensor.requires_grad for pair in detached for tensor in pair)
    assert torch.equal(detached[0][0], state[0][0]) and torch.equal(detached[0][1], state[0][1])
    assert lstm.detach_state(None) is None


def test_stacked_layers_and_dropout_between_layers():
    torch.manual_seed(5)
    lstm = ConvLSTM(C, [6, 5, 4], dropout=0.5)
    assert lstm.num_layers == 3 and [cell.input_channels for cell in lstm.cells] == [C, 6, 5]
    x = torch.randn(B, T, C, H, W)
    lstm.eval()
    y_eval, state = lstm(x)
    assert y_eval.shape == (B, T, 4, H, W)
    assert [pair[1].shape[1] for pair in state] == [6, 5, 4]
    torch.testing.assert_close(lstm(x)[0], y_eval, rtol=0, atol=0)
    lstm.train()
    y_train, y_train_again = lstm(x)[0], lstm(x)[0]
    assert not torch.allclose(y_train, y_eval) and not torch.allclose(y_train, y_train_again)
    lstm.dropout = 0.0
    torch.testing.assert_close(lstm(x)[0], y_eval)
    with pytest.warns(UserWarning, match="between layers"):
        ConvLSTM(C, 4, dropout=0.5)


@pytest.mark.parametrize("norm", [None, "layer"], ids=["fused-loop", "stepwise-loop"])
def test_recurrent_dropout_uses_one_mask_per_sequence(monkeypatch, norm):
    torch.manual_seed(6)
    lstm = _randomise(ConvLSTM(C, 4, recurrent_dropout=0.5, norm=norm).double())
    reference = ReferenceConvLSTM.from_fused(lstm)
    masks = []
    recurrent_mask = ConvLSTM._recurrent_mask

    def recording(self, like, hidden_channels):
        masks.append(recurrent_mask(self, like, hidden_channels))
        return masks[-1]

    monkeypatch.setattr(ConvLSTM, "_recurrent_mask", recording)
    x = torch.randn(B, T, C, H, W, dtype=torch.float64, requires_grad=True)
    y, _ = lstm(x)
    assert len(masks) == 1  # one mask for the whole sequence, every step
    mask = masks[0]
    assert mask.shape == (B, 4, H, W)
    assert set(mask.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(mask[0], mask[1])  # one mask per sequence, not shared by the batch
    y_ref = reference(x, h_masks={(0, 0): mask})[0]
    torch.testing.assert_close(y, y_ref, **TOL)
    assert not torch.allclose(y, reference(x)[0])
    weights = torch.randn_like(y)
    grad_x, = torch.autograd.grad((y * weights).sum(), x)
    torch.testing.assert_close(grad_x, torch.autograd.grad((y_ref * weights).sum(), x)[0], **TOL)

    masks.clear()
    lstm(x)
    assert not torch.equal(masks[0], mask)  # a new sequence draws a new mask
    masks.clear()
    lstm.eval()
    torch.testing.assert_close(lstm(x)[0], reference(x)[0], **TOL)
    assert not masks


def test_bidirectional_shapes_and_state_errors():
    lstm = ConvLSTM(C, [4, 3], bidirectional=True)
    assert [cell.input_channels for cell in lstm.cells] == [C, 8]
    x = torch.randn(B, T, C, H, W)
    y, state = lstm(x)
    assert y.shape == (B, T, 6, H, W) and lstm.output_channels == 6
    assert [tuple(pair[0].shape) for pair in state] == [(B, 8, H, W), (B, 6, H, W)]
    with pytest.raises(ValueError, match="bidirectional"):
        lstm(x, state)
    with pytest.raises(ValueError, match="bidirectional"):
        lstm.reset_state(state, torch.ones(B, dtype=torch.bool))
    with pytest.raises(ValueError, match="bidirectional"):
        lstm.detach_state(state)


def test_backward_direction_sees_the_future():
    torch.manual_seed(7)
    lstm = ConvLSTM(C, 4, bidirectional=True)
    x = torch.randn(1, T, C, H, W, requires_grad=True)
    y, _ = lstm(x)
    y[:, 0, 4:].sum().backward(retain_graph=True)
    assert x.grad[:, -1].abs().sum() > 0
    x.grad = None
    y[:, 0, :4].sum().backward()
    assert x.grad[:, 1:].abs().sum() == 0  # the forward direction at t=0 sees only frame 0


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_norm_options_keep_shapes(norm):
    lstm = ConvLSTM(C, [8, 6], norm=norm)
    assert lstm.cells[0].norm.num_groups == (4 if norm == "layer" else 4 * 8)
    y, state = lstm(torch.randn(B, T, C, H, W))
    assert y.shape == (B, T, 6, H, W) and state[1][0].shape == (B, 6, H, W)
    with pytest.raises(ValueError, match="norm"):
        ConvLSTM(C, 4, norm="batch")
    with pytest.raises(ValueError, match="bias"):
        ConvLSTMCell(C, 4, bias=False, norm=norm)


def test_gradient_flows_to_the_first_time_step():
    torch.manual_seed(8)
    lstm = ConvLSTM(C, [4, 4])
    x = torch.randn(B, 8, C, H, W, requires_grad=True)
    y, _ = lstm(x)
    y[:, -1].sum().backward()
    assert x.grad[:, 0].abs().sum() > 0
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in lstm.parameters())


def test_time_major_layout_matches_batch_first():
    torch.manual_seed(9)
    batch_first = ConvLSTM(C, 4)
    time_major = ConvLSTM(C, 4, batch_first=False)
    time_major.load_state_dict(batch_first.state_dict())
    x = torch.randn(B, T, C, H, W)
    y, state = batch_first(x)
    y_time_major, state_time_major = time_major(x.transpose(0, 1))
    torch.testing.assert_close(y_time_major.transpose(0, 1), y)
    torch.testing.assert_close(state_time_major[0][1], state[0][1])


def test_invalid_inputs_raise_clear_errors():
    lstm = ConvLSTM(C, [4, 3])
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        lstm(torch.randn(B, C, H, W))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        lstm(torch.randn(B, T, C + 1, H, W))
    with pytest.raises(ValueError, match="one \\(h, c\\) per layer"):
        lstm(torch.randn(B, T, C, H, W), [(torch.zeros(B, 4, H, W), torch.zeros(B, 4, H, W))])
    with pytest.raises(ValueError, match=r"state\[1\]: h"):
        lstm(torch.randn(B, T, C, H, W), [(torch.zeros(B, 4, H, W),) * 2, (torch.zeros(B, 4, H, W),) * 2])
    with pytest.raises(ValueError, match="num_layers"):
        ConvLSTM(C, [4, 3], num_layers=3)
    with pytest.raises(ValueError, match="kernel_size"):
        ConvLSTMCell(C, 4, kernel_size=2)
    assert ConvLSTM(C, 4, num_layers=2).hidden_channels == [4, 4]


def test_fused_loop_under_autocast_computes_in_the_input_convolutions_dtype():
    torch.manual_seed(8)
    lstm = _randomise(ConvLSTM(C, 4))
    x = torch.randn(B, T, C, H, W)
    y_full, _ = lstm(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, [(h, c)] = lstm(x)
        carried, _ = lstm(x, [(h.float(), c.float())])  # a float32 state joins the bfloat16 loop
    assert y.dtype == c.dtype == carried.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_full, atol=0.05, rtol=0.05)
    y.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and p.grad.abs().sum() > 0 for p in lstm.parameters())
