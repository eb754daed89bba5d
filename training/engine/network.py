"""The network: layer sizes, weights and biases, and back-propagation (BP1-BP4).

All parameters live in one flat array; each weight matrix and bias vector is a view
into it.  That makes an optimizer step a handful of whole-array operations whatever
the depth, a copy of the model one memcpy, and a snapshot for the service one
reference.  Rows are samples: a batch is a (batch x features) matrix and z = a W + b
with W of shape (n_in, n_out) (scikit-learn's ``coefs_`` layout; Nielsen's W is its
transpose).  BP4, dC/dW = delta a^T per sample, is then a^T delta for the batch.  This
layout was measured faster than (n_out, n_in) for the products that dominate training
(bench/train_bench.py, BENCHMARKS.md): x W and a^T delta on the wide first layer.

Each bias vector is stored right after its weight matrix, so the two together are one
(n_in + 1, n_out) matrix whose last row is b.  Training gives every layer's input a
last column of ones, and then one product does the work of three passes: z = [a 1] [W; b]
(no bias add), and [a 1]^T delta is dC/dW (BP4) with dC/db = sum of delta (BP3) as
its last row.
"""

from __future__ import annotations

import numpy as np

from training.engine import layout
from training.engine.activations import Activation, get_activation
from training.engine.layout import Cache, Gradients, n_parameters, with_ones
from training.engine.losses import Loss, get_loss

Array = np.ndarray
DTYPES = {"float32": np.float32, "float64": np.float64}
INITS = ("gaussian", "xavier", "he")


class Network:
    """A fully connected feed-forward network trained by back-propagation.

    ``hidden_activation`` is one name for every hidden layer or a list with one per
    hidden layer.  The output activation defaults to what the loss needs: softmax for
    cross-entropy, sigmoid otherwise (the seeds' choice).
    """

    def __init__(
        self,
        sizes: list[int],
        hidden_activation: str | list[str] = "sigmoid",
        output_activation: str | None = None,
        loss: str = "quadratic",
        *,
        init: str | None = None,
        dtype: str = "float32",
        seed: int | None = 0,
        params: Array | None = None,
    ) -> None:
        self.sizes = layout.check_sizes(sizes)
        n_hidden = len(self.sizes) - 2
        hidden = (
            [hidden_activation] * n_hidden
            if isinstance(hidden_activation, str)
            else list(hidden_activation)
        )
        if len(hidden) != n_hidden:
            raise ValueError(
                f"{n_hidden} hidden layers need {n_hidden} activations, got {len(hidden)}"
            )
        self.loss: Loss = get_loss(loss)
        if output_activation is None:
            output_activation = self.loss.requires or "sigmoid"
        self.layers: list[Activation] = [get_activation(n) for n in [*hidden, output_activation]]
        if self.loss.requires and self.layers[-1].name != self.loss.requires:
            raise ValueError(
                f"loss {self.loss.name!r} needs a {self.loss.requires!r} output layer, "
                f"got {self.layers[-1].name!r}"
            )
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
        self.dtype = np.dtype(DTYPES[dtype])
        if init is not None and init not in INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {list(INITS)}")
        self.init = init

        n = n_parameters(self.sizes)
        if params is None:
            self.params = np.empty(n, dtype=self.dtype)
            self.weights, self.biases = layout.layer_views(self.params, self.sizes)
            self._initialise(np.random.default_rng(seed))
        else:
            params = np.asarray(params)
            if params.shape != (n,) or params.dtype != self.dtype:
                raise ValueError(
                    f"params must be a flat {self.dtype} array of {n} values, "
                    f"got {params.dtype} {params.shape}"
                )
            self.params = params
            self.weights, self.biases = layout.layer_views(self.params, self.sizes)
        self._augmented = self.augmented_views(self.params)

    # -- description --------------------------------------------------------------
    @property
    def activation_names(self) -> list[str]:
        return [a.name for a in self.layers]

    @property
    def n_inputs(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    def decay_mask(self) -> Array:
        """1 where a parameter is a weight, 0 where it is a bias: L2 decays weights only."""
        mask = np.zeros_like(self.params)
        for w in layout.layer_views(mask, self.sizes)[0]:
            w[...] = 1
        return mask

    def copy(self, params: Array | None = None) -> Network:
        """A network with the same structure and a private copy (or the given) parameters."""
        new = object.__new__(Network)
        new.__dict__.update(self.__dict__)
        new.params = self.params.copy() if params is None else params
        new.weights, new.biases = layout.layer_views(new.params, new.sizes)
        new._augmented = new.augmented_views(new.params)
        return new

    def _initialise(self, rng: np.random.Generator) -> None:
        for w, b, act in zip(self.weights, self.biases, self.layers):
            n_in, n_out = w.shape
            scheme = self.init or act.default_init
            if scheme == "gaussian":  # Nielsen: N(0, 1) weights and biases
                w[...] = rng.standard_normal(w.shape)
                b[...] = rng.standard_normal(b.shape)
                continue
            std = np.sqrt(2.0 / (n_in + n_out)) if scheme == "xavier" else np.sqrt(2.0 / n_in)
            w[...] = rng.standard_normal(w.shape) * std
            b[...] = 0

    # -- input checks (public API only; the training loop checks its data once) ----
    def check_inputs(self, x: object, what: str = "inputs") -> Array:
        """Return ``x`` as a (batch x n_inputs) array of the network's dtype, or raise."""
        return layout.check_matrix(x, self.n_inputs, self.dtype, what)

    def check_targets(self, y: object, n_rows: int) -> Array:
        y = layout.check_matrix(y, self.n_outputs, self.dtype, "targets")
        if y.shape[0] != n_rows:
            raise ValueError(f"targets have {y.shape[0]} rows but inputs have {n_rows}")
        return y

    # -- the passes -----------------------------------------------------------------
    def forward(self, x: Array) -> Cache:
        """Forward pass that keeps every z and a for ``backward``."""
        return self.forward_rows(self.check_inputs(x))

    def forward_rows(self, x: Array) -> Cache:
        """``forward`` for rows already checked (the training loop checks its data once)."""
        return self.forward_ones(with_ones(x))

    def forward_ones(self, x1: Array) -> Cache:
        """The forward pass from a batch that already has its column of ones.

        The training loop gathers each batch straight into such a buffer; every hidden
        layer writes its activations into the next one's.
        """
        zs, inputs = [], [x1]
        for wb, act in zip(self._augmented[:-1], self.layers[:-1]):
            z = inputs[-1] @ wb
            a1 = np.empty((z.shape[0], z.shape[1] + 1), dtype=z.dtype)
            a1[:, -1] = 1
            act.forward(z, out=a1[:, :-1])
            zs.append(z)
            inputs.append(a1)
        z = inputs[-1] @ self._augmented[-1]
        zs.append(z)
        return Cache(zs, inputs, self.layers[-1].forward(z))

    def backward(self, cache: Cache, y: Array) -> Gradients:
        """BP1-BP4 on the whole batch; returns gradients and leaves the model unchanged."""
        y = self.check_targets(y, cache.inputs[0].shape[0])
        return self.backward_into(cache, y, np.empty_like(self.params))

    def backward_into(self, cache: Cache, y: Array, out: Array) -> Gradients:
        """``backward`` for targets already checked, into ``out`` (flat, shaped like
        ``params``): the caller chooses the buffer."""
        self.backprop(cache, y, self.augmented_views(out))
        return Gradients(out, *layout.layer_views(out, self.sizes))

    def augmented_views(self, flat: Array) -> list[Array]:
        """Each layer's [W; b] block of a flat array shaped like ``params``."""
        return layout.augmented_views(flat, self.sizes)

    def backprop(self, cache: Cache, y: Array, g_wbs: list[Array]) -> None:
        """BP1-BP4 into each layer's [dC/dW; dC/db] view (``augmented_views`` of one
        buffer): the training loop makes the views once per epoch, not once per batch.

        In Nielsen's notation, rows as samples (so W^T and a^T sit where his W and a do):
        BP1 delta^L = dC/da^L * sigma'(z^L); BP2 delta^l = (delta^(l+1) W^(l+1)^T) *
        sigma'(z^l); BP3 dC/db^l = sum over rows of delta^l; BP4 dC/dW^l = a^(l-1)^T
        delta^l.  The textbook form, one line per equation with numpy's own temporaries,
        is bench/compact_reference.py; this one differs only in writing BP3 and BP4 as
        one product into the caller's buffer.
        """
        inputs, zs = cache.inputs, cache.zs
        # BP1: the output error, already averaged over the batch by the loss.
        delta = self.loss.delta(cache.output, zs[-1], y, self.layers[-1])
        for layer in range(len(g_wbs) - 1, -1, -1):
            # BP4 and BP3 in one product: [a 1]^T delta = [dC/dW; dC/db].
            np.matmul(inputs[layer].T, delta, out=g_wbs[layer])
            if layer:
                # BP2: back through W^T, then through the activation's derivative.
                grad_a = delta @ self.weights[layer].T
                a = inputs[layer][:, :-1]
                delta = self.layers[layer - 1].backward(zs[layer - 1], a, grad_a)

    def gradients(self, x: Array, y: Array) -> Gradients:
        cache = self.forward(x)
        return self.backward(cache, y)

    def loss_value(self, x: Array, y: Array) -> float:
        cache = self.forward(x)
        y = self.check_targets(y, cache.output.shape[0])
        return self.loss.value(cache.output, cache.zs[-1], y)

    def predict(self, x: Array) -> Array:
        """Output activations for a batch (class probabilities for a softmax classifier)."""
        return self.output(self.check_inputs(x))

    def output(self, x: Array) -> Array:
        """``predict`` for rows already checked (by ``check_inputs`` or the caller).

        Adds each bias instead of giving the rows a ones column as training does: with no
        backward pass to feed, the ones column would only cost a copy of the rows (the
        sums then agree with training's to a few ulp, bit for bit only where the BLAS
        kernel adds the bias row last).  Each activation overwrites its own z, which
        nothing else reads: that changes no bit, and a 1,000-row request works in memory
        it has just written instead of a fresh megabyte per layer.
        """
        a = x
        for w, b, act in zip(self.weights, self.biases, self.layers):
            z = a @ w
            z += b
            a = act.forward(z, out=z)
        return a

    def predict_classes(self, x: Array) -> Array:
        """Index of the largest output per row: the predicted class."""
        return np.argmax(self.predict(x), axis=1)
