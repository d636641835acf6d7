"""Parameter-efficient fine-tuning of a deployed LMUFormer: AFLoRA, LoRA, VeRA, head-only and full.

One package per adapter kind (``aflora/``, ``lora/``, ``vera/``: config, layer, model), the
PEFT-style API in :mod:`lmustream.adapters.api`, and teaching a model new keywords from a few
clips in :mod:`lmustream.adapters.finetune` (``lmustream finetune``). See docs/adapters.md.

Names are imported on first use, so ``import lmustream.adapters.cli`` (the command line's
parser) does not load torch.
"""

from importlib import import_module

_EXPORTS = {
    "lmustream.adapters.aflora": ("AFLoRAConfig", "AFLoRAFreezer", "AFLoRALayer", "FreezeEvent", "FreezingSchedule"),
    "lmustream.adapters.api": ("METHODS", "adapter_config", "adapter_layers", "add_adapter", "count_parameters",
                               "load_adapter", "make_config", "merge", "merged_artifact",
                               "print_trainable_parameters", "read_adapter_header", "save_adapter"),
    "lmustream.adapters.baselines": ("FullFineTuneConfig", "HeadOnlyConfig"),
    "lmustream.adapters.core": ("AdaptedLayer", "AdapterConfig", "adaptable_layers", "select_targets"),
    "lmustream.adapters.head": ("grow_head",),
    "lmustream.adapters.lora": ("LoRAConfig", "LoRALayer"),
    "lmustream.adapters.vera": ("VeRAConfig", "VeRALayer"),
    "lmustream.adapters.finetune": ("FinetuneConfig", "FinetuneResult", "finetune"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'lmustream.adapters' has no attribute {name!r}")


def __dir__():
    return __all__
