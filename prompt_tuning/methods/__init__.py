"""Parameter-efficient methods beside prompt tuning, attached to a frozen T5 without model branches.

    lora.LoRA          W x + (alpha / r) B A x beside chosen projections (Hu et al., 2021)
    ia3.IA3            learned rescaling of keys, values and the FFN hidden activation (Liu et al., 2022)
    adapters.Adapters  Houlsby bottleneck adapters after every attention and FFN sublayer (Houlsby et al., 2019)
    prefix.Prefix      key / value prefixes in every attention, direct or MLP-reparameterised (Li and Liang, 2021)
    ptuning.PTuning    a soft prompt produced by an MLP or LSTM prompt encoder (Liu et al., 2021)
    multitask.MultiTaskPrompt  a shared prompt added to / concatenated with a per-row task prompt
                       (the reference code's extensions; Wang et al., 2023)

Each method is a frozen (hashable) dataclass that is also a Flax method
interceptor; `T5(config, methods=(LoRA(rank=8),))` installs it (models/t5.py).
It creates its parameters inside the modules it targets, with names no frozen
checkpoint uses, and each class names them by `TRAINABLE_REGEX`, which is
what the trainer's one regex mechanism (TRAINABLE_REGEX in gin) selects.
gin: `@lora()`, `@ia3()`, `@adapters()`, `@prefix()`, `@p_tuning()`,
`@multitask_prompt()` (gin/methods/*.gin).
"""
from prompt_tuning.methods.adapters import Adapters, adapters
from prompt_tuning.methods.ia3 import IA3, ia3
from prompt_tuning.methods.lora import LoRA, lora
from prompt_tuning.methods.multitask import MultiTaskPrompt, multitask_prompt
from prompt_tuning.methods.prefix import Prefix, prefix
from prompt_tuning.methods.ptuning import PTuning, p_tuning

__all__ = ["Adapters", "IA3", "LoRA", "MultiTaskPrompt", "PTuning", "Prefix", "adapters", "ia3", "lora", "multitask_prompt",
           "p_tuning", "prefix"]
