"""What ``bptrain`` shows while it trains: the progress bar or lines, and the curves PNG."""

from __future__ import annotations

import io
import sys


class Progress:
    """A tqdm bar on a terminal; otherwise (or with --quiet) one plain line per epoch."""

    def __init__(self, epochs: int, plain: bool, label: str | None = None) -> None:
        self.bar = None
        self.prefix = f"{label} " if label else ""  # "refit": which of the two fits
        if not plain:
            from tqdm import tqdm

            self.bar = tqdm(
                total=epochs, desc=label, unit="epoch", file=sys.stderr, dynamic_ncols=True
            )

    def __call__(self, record: dict) -> None:
        fields = {"loss": f"{record['train_loss']:.4f}"}
        if record.get("val_loss") is not None:
            fields["val_loss"] = f"{record['val_loss']:.4f}"
        if record.get("val_accuracy") is not None:
            fields["val_acc"] = f"{record['val_accuracy'] * 100:.2f}%"
        if self.bar is not None:
            self.bar.set_postfix(fields, refresh=False)
            self.bar.update(1)
        else:
            shown = " ".join(f"{k} {v}" for k, v in fields.items())
            print(
                f"{self.prefix}epoch {record['epoch']} {shown}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_png(history: list[dict]) -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r["train_loss"] for r in history], label="train")
    if history[0].get("val_loss") is not None:
        ax1.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    if history[0].get("train_accuracy") is not None:
        ax2.plot(epochs, [r["train_accuracy"] for r in history], label="train")
        if history[0].get("val_accuracy") is not None:
            ax2.plot(epochs, [r["val_accuracy"] for r in history], label="validation")
        ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
