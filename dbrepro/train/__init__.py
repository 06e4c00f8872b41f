"""Training: the config of a run, the objective, the loop, checkpoints, one process or many.

- :mod:`.config`: :class:`TrainConfig` (everything that determines a run, and its cache key) and
  :class:`DFIConfig`;
- :mod:`.objective`: the head + extra terms + RBM gate regression, and the one DFI buffer (DB Eq. 1-2, 6);
- :mod:`.loop`: :func:`fit`, a loop of small named steps (start, resume, epoch sampler, train step, end of
  epoch, finish) with callbacks;
- :mod:`.sgd`: the CPU's SGD, ``torch.optim.SGD``'s arithmetic without its import of ``torch._dynamo``;
- :mod:`.checkpoint`: ``checkpoint.pt`` / ``model.pt``, loaded with ``weights_only=True``;
- :mod:`.distributed`: joining torchrun's process group.
"""

from .checkpoint import CheckpointMismatchError, load_trained
from .config import DFIConfig, TrainConfig
from .distributed import DistInfo, init_distributed
from .loop import Callback, NonFiniteLossError, TrainResult, TrainState, dfi_refresh, fit
from .objective import Objective, TrainModule, build, build_objective, refresh_dfi

__all__ = [
    "Callback", "CheckpointMismatchError", "DFIConfig", "DistInfo", "NonFiniteLossError", "Objective",
    "TrainConfig", "TrainModule", "TrainResult", "TrainState", "build", "build_objective", "dfi_refresh", "fit",
    "init_distributed", "load_trained", "refresh_dfi",
]
