"""``gan_ddp``: data-parallel training with the generator and discriminator in separate DDP wrappers.

Plain ``strategy="ddp"`` wraps the whole LightningModule in one DistributedDataParallel; a GAN's
discriminator step then leaves every generator parameter without a gradient and DDP stops with an
unused-parameter error. ``ddp_find_unused_parameters_true`` works but searches the autograd graph
every step. Here each network gets its own wrapper, so every backward reduces exactly the
parameters it touched and nothing is searched.

The LightningModule names its networks in ``ddp_submodules`` (e.g. ``("generator",
"discriminator")``) and calls them through ``self.ddp_wrapped(name)``; the modules themselves stay
attributes of the LightningModule, so checkpoints keep plain key names.
"""

from __future__ import annotations

from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch.nn import Module
from torch.nn.parallel import DistributedDataParallel


class GanDDPStrategy(DDPStrategy):
    """DDP with one wrapper per network listed in the LightningModule's ``ddp_submodules``."""

    strategy_name = "gan_ddp"

    def _setup_model(self, model: Module) -> Module:
        names = getattr(model, "ddp_submodules", ())
        if not names:
            raise ValueError(
                f"{type(model).__name__} names no `ddp_submodules`; strategy 'gan_ddp' needs them "
                "(or use strategy 'ddp' for a non-GAN model)."
            )
        device_ids = self.determine_ddp_device_ids()
        wrappers = {name: DistributedDataParallel(getattr(model, name), device_ids=device_ids, **self._ddp_kwargs)
                    for name in names}
        # not registered as submodules: parameters and state-dict keys stay those of the plain networks
        object.__setattr__(model, "_ddp_wrappers", wrappers)
        return model

    def teardown(self) -> None:
        module = self.lightning_module
        if module is not None and hasattr(module, "_ddp_wrappers"):
            object.__delattr__(module, "_ddp_wrappers")
        super().teardown()

    @classmethod
    def register_strategies(cls, strategy_registry: dict) -> None:
        strategy_registry.register(cls.strategy_name, cls, description="DDP with separate G and D wrappers",
                                   start_method="popen")


if GanDDPStrategy.strategy_name not in StrategyRegistry:
    GanDDPStrategy.register_strategies(StrategyRegistry)
