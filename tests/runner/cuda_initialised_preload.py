"""A forkserver preload for tests, imported before bench.runner.preload: it leaves torch's CUDA
state initialised, as bitsandbytes' import does on a GPU machine (get_device_capability runs
torch.cuda._lazy_init). On this CPU build only torch's flag can be set; it is the flag
`torch.cuda.is_initialized()` reads, in the server and, inherited, in a child forked from it."""

import torch

torch.cuda._initialized = True
