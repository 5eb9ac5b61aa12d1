"""Keeping the libraries' own chatter out of the harness's output.

diffusers, transformers and the hub print info logs, progress bars and deprecation notices while
they load and save models, which would bury what the harness itself says. A leaf module: the
synthetic builder, the runner and the CLI all quiet the libraries, from any layer.
"""

from __future__ import annotations

import logging
import os

#: Loggers that warn while their library is imported, about things no cell of this harness
#: uses: bitsandbytes cannot fetch its optional CPU kernel from the Hub (`kernels`), torchao's
#: CUDA extensions do not load on a CPU build of torch, torch's pytree deprecates a call torchao
#: makes, and diffusers cannot import tensor classes of older torchao checkpoints. A cell that
#: needs any of them fails with the library's own error, which the record keeps.
IMPORT_CHATTER = (
    "bitsandbytes",
    "kernels",
    "torchao",
    "torch.utils._pytree",
    "diffusers.quantizers.torchao.torchao_quantizer",
)


def quiet_library_environment() -> None:
    """Library chatter (info logs, hub progress bars, import-time warnings) would bury the
    harness's own output.

    Environment variables are set as defaults only, so a user who wants the chatter can set
    them; child processes inherit them. The import-time loggers are raised to ERROR before the
    libraries are imported (a logger's level survives its library configuring it).
    """
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in IMPORT_CHATTER:
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_library_output() -> None:
    """The environment defaults plus the progress bars and deprecation notices the libraries
    print while loading and saving (for processes that import them anyway)."""
    import warnings

    from diffusers.utils import logging as diffusers_logging  # diffusers: heavy, loaded anyway
    from transformers.utils import logging as transformers_logging  # transformers: likewise

    quiet_library_environment()
    warnings.filterwarnings("ignore", category=FutureWarning)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
