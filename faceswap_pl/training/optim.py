"""Adam for GHOST's betas (0, 0.999): no first-moment buffer, and a step one parameter at a time.

:class:`LeanAdam` is ``torch.optim.Adam`` that, with ``beta1 = 0``, keeps no ``exp_avg`` (it would equal the
gradient) and can update one parameter from its gradient (:meth:`LeanAdam.step_parameter`), which the training
step uses to apply the generator's update inside the backward pass. The updates are torch's own Adam functions,
so they equal ``torch.optim.Adam``'s bit for bit (``tests/test_ghost_parity.py``).
"""

from __future__ import annotations

import torch
from torch.optim.adam import adam as _adam_functional
from torch.optim.optimizer import _get_scalar_dtype


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam`` that keeps no first-moment buffer when ``beta1 == 0`` and can step one
    parameter at a time.

    With ``beta1 = 0`` (GHOST's betas are (0, 0.999)) Adam's first moment after a step is the
    (weight-decayed) gradient itself: ``exp_avg.lerp_(grad, 1)`` leaves exactly ``grad``. So the
    gradient tensor is passed as its own ``exp_avg`` to torch's Adam functions, which then compute
    bitwise the same update, and ``state`` holds only ``step`` and ``exp_avg_sq``: one parameter-sized
    buffer less (0.8 GB for GHOST's 218M parameters). The gradient tensor is overwritten with the
    weight-decayed gradient on the way (it is dropped after the step). With ``beta1 != 0`` this is
    plain ``torch.optim.Adam``.
    """

    def __init__(self, params, **kwargs) -> None:
        super().__init__(params, **kwargs)
        for group in self.param_groups:
            if self._lean(group) and (group["amsgrad"] or group["differentiable"]):
                raise ValueError("LeanAdam supports neither amsgrad nor differentiable with beta1 = 0")

    @staticmethod
    def _lean(group: dict) -> bool:
        return group["betas"][0] == 0

    @torch.no_grad()
    def init_state(self) -> None:
        """Create every parameter's state now (the zeros Adam creates at its first step), so that the
        long-lived buffers are allocated together before training instead of between activations."""
        for group in self.param_groups:
            for p in group["params"]:
                self._init_param_state(group, p)

    def _init_param_state(self, group: dict, p: torch.Tensor) -> dict:
        state = self.state[p]
        if "exp_avg_sq" not in state:
            dtype = _get_scalar_dtype(is_fused=group["fused"])
            state["step"] = (torch.zeros((), dtype=dtype, device=p.device)
                             if group["capturable"] or group["fused"] else torch.tensor(0.0, dtype=dtype))
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if not self._lean(group):
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        if not any(self._lean(group) for group in self.param_groups):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group, [p for p in group["params"] if p.grad is not None])
        return loss

    @torch.no_grad()
    def step_parameter(self, param: torch.Tensor) -> None:
        """Adam's update of one parameter from its ``.grad`` (as :meth:`step` would do it)."""
        for group in self.param_groups:
            if any(param is p for p in group["params"]):
                self._step_group(group, [param])
                return
        raise ValueError("the parameter is not in this optimizer")

    def _step_group(self, group: dict, params: list[torch.Tensor]) -> None:
        if not params:
            return
        if not self._lean(group):
            saved = group["params"]
            group["params"] = params
            try:
                super().step()
            finally:
                group["params"] = saved
            return
        grads, exp_avg_sqs, steps = [], [], []
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("Adam does not support sparse gradients")
            state = self._init_param_state(group, p)
            state.pop("exp_avg", None)  # e.g. loaded from a plain Adam's checkpoint: not needed with beta1 = 0
            grads.append(p.grad)
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        _adam_functional(
            params, grads, grads, exp_avg_sqs, [], steps,  # the gradients double as exp_avg (beta1 = 0)
            amsgrad=False, has_complex=any(torch.is_complex(p) for p in params), beta1=0.0,
            beta2=group["betas"][1], lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
            maximize=group["maximize"], foreach=group["foreach"], capturable=group["capturable"],
            differentiable=False, fused=group["fused"], grad_scale=getattr(self, "grad_scale", None),
            found_inf=getattr(self, "found_inf", None), decoupled_weight_decay=group["decoupled_weight_decay"],
        )

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p, {})
                if self._lean(group):
                    state.pop("exp_avg", None)
                elif state and "exp_avg" not in state:  # saved with beta1 = 0, now beta1 != 0: start afresh
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def make_adam(params, fused: bool, **kwargs) -> LeanAdam:
    """:class:`LeanAdam`; with ``fused``, the fused implementation where the device and dtype have it."""
    params = list(params)
    fused = fused and bool(params) and all(p.device.type in _FUSED_ADAM_DEVICES and p.dtype in _FUSED_ADAM_DTYPES
                                           for p in params)
    return LeanAdam(params, fused=fused or None, **kwargs)


_FUSED_ADAM_DEVICES = ("cpu", "cuda", "xpu", "mps")
_FUSED_ADAM_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
