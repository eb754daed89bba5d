"""The back-propagation engine: everything that trains a network, and nothing else.

- ``activations``: each activation with its derivative, a table by name;
- ``losses``: each loss with its value and its output error (BP1);
- ``network``: sizes, one flat parameter array, the forward pass keeping z and a,
  the backward pass (BP1-BP4), predict;
- ``optimizers``: SGD with classical or Nesterov momentum, decay and clipping, its
  state as named arrays apart from its hyperparameters;
- ``trainer``: the epoch loop (shuffling, batches, schedules, validation, early
  stopping, callbacks);
- ``layout``: the flat parameter array's views, the forward cache, the input checks;
- ``blas``: the BLAS calls the optimizer step makes.

Data, preprocessing, the model and its manifest, the store and the journal live
beside it in ``training/``; the engine knows none of them.
"""

from training.engine.network import Network
from training.engine.optimizers import SGD
from training.engine.trainer import Schedule, fit

__all__ = ["SGD", "Network", "Schedule", "fit"]
