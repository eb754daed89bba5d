"""bpserve's training side: the back-propagation engine, optimizers, data, the model
store and the ``bptrain`` command.  Knows nothing of HTTP."""

from training.engine import SGD, Network, Schedule, fit

__all__ = ["SGD", "Network", "Schedule", "fit"]
