"""SGD with momentum and weight decay, as ``torch.optim.SGD`` computes it on the CPU, in a few lines.

Every ``torch.optim`` optimiser imports ``torch._dynamo`` the first time it is built or steps
(``add_param_group`` and ``step`` are wrapped to keep the compiler out of them): 2.3-2.5 s in every new
process on the 2-core development machine (2026-12-03, torch 2.14.1, ``benchmarks/bench_optimizer_start.py``),
half as long as a whole rehearsal run trains. The book starts a fresh process for every chapter, every worker
of a chapter's parallel runs and every ``torchrun`` rank, so on the CPU the loop uses this class instead: the
update of PyTorch's single-tensor path (which ``torch.optim.SGD`` takes for CPU tensors), operation for
operation, so a run trains bit-identically with either (``tests/test_sgd.py`` checks it), and the same
``state_dict`` layout, so a checkpoint written by one resumes in the other. On CUDA the loop keeps
``torch.optim.SGD``: its multi-tensor kernels matter there, the import does not.

For parameters :math:`w`, gradient :math:`g`, weight decay :math:`\\lambda`, momentum :math:`\\mu` and
learning rate :math:`\\eta` (the papers' recipe: :math:`\\mu = 0.9`, :math:`\\lambda = 5 \\cdot 10^{-4}`)::

    d = g + lambda * w            # weight decay, added to the gradient
    b = d            (first step)
    b = mu * b + d   (later steps)  # the momentum buffer
    w = w - eta * b
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

#: the hyper-parameters ``torch.optim.SGD`` keeps in each param group, with its defaults
_GROUP_DEFAULTS = {"dampening": 0, "nesterov": False, "maximize": False, "foreach": None, "differentiable": False,
                   "fused": None}


class SGD:
    """One param group of plain SGD (no dampening, no Nesterov); ``torch.optim.SGD``'s interface as the loop
    and ``torch.amp.GradScaler`` use it: ``param_groups``, ``state``, ``step``, ``zero_grad``, ``state_dict``
    and ``load_state_dict``."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        params = list(params)
        if not params:
            raise ValueError("SGD got an empty parameter list")
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD needs lr, momentum and weight_decay >= 0, got {lr}, {momentum}, {weight_decay}")
        self.param_groups: list[dict[str, Any]] = [
            {"params": params, "lr": lr, "momentum": momentum, "weight_decay": weight_decay, **_GROUP_DEFAULTS}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    @property
    def _params(self) -> list[torch.nn.Parameter]:
        return self.param_groups[0]["params"]

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (the others, and their buffers, are left alone)."""
        group = self.param_groups[0]
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        for p in self._params:
            if p.grad is None:
                continue
            d = p.grad
            if weight_decay != 0:
                d = d.add(p, alpha=weight_decay)
            if momentum != 0:
                state = self.state.setdefault(p, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d.detach().clone()
                else:
                    buf.mul_(momentum).add_(d)
                d = buf
            p.add_(d, alpha=-lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.SGD``'s layout: states keyed by the parameter's position, the group's ``params`` as
        positions."""
        index = {id(p): i for i, p in enumerate(self._params)}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": {index[id(p)]: dict(s) for p, s in self.state.items()},
                "param_groups": [{**group, "params": list(range(len(self._params)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state of this class or of ``torch.optim.SGD`` over the same parameters (one group)."""
        groups = state_dict.get("param_groups")
        if not isinstance(groups, list) or len(groups) != 1 or len(groups[0].get("params", ())) != len(self._params):
            raise ValueError(f"the optimizer state does not match: expected one param group of {len(self._params)} "
                             f"parameters, got {[len(g.get('params', ())) for g in groups or []]}")
        positions = {pos: i for i, pos in enumerate(groups[0]["params"])}
        self.state = {}
        for pos, saved in state_dict["state"].items():
            p = self._params[positions[pos]]
            self.state[p] = {k: v.to(device=p.device, dtype=p.dtype, copy=True) if torch.is_tensor(v) else v
                             for k, v in saved.items()}
        self.param_groups[0].update({k: v for k, v in groups[0].items() if k != "params"})
