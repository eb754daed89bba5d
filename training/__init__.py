"""bpserve's training side: the back-propagation engine, optimizers, data, the model
store and the ``bptrain`` command.  Knows nothing of HTTP."""

from training.network import Network
from training.optimizers import SGD
from training.trainer import Schedule, fit

__all__ = ["SGD", "Network", "Schedule", "fit"]
