"""What `nntrain train` does on the default config, written as a user's own bare script (no nntrain).

The digits (the same array file nntrain ships), a seeded 70/15/15 split of the same sizes, train
statistics for normalization, the default CNN (conv32-bn-relu-pool, conv64-bn-relu-pool, fc128, fc10),
SGD with Nesterov momentum, cosine schedule, λ=1e-4 in the loss, channels-last layout, 20 epochs,
best-val model tested once and saved — and what a user's script writes at the end: the learning
curves and the test confusion matrix as PNGs (matplotlib) and the test accuracy. The yardstick for
`nntrain train`'s whole-process wall time and peak memory (scripts/bench.py --only process).

    python scripts/bare_train.py [cpu|cuda] [--gc-tuned] [--threads N]

``--gc-tuned`` handles Python's cyclic collector as ``nntrain train`` does (paused during start-up,
the start-up heap frozen at training start and at exit). ``--threads N`` sets torch's intra-op
threads (default: torch's, one per core; nntrain's policy gives this small work one).
"""

import sys
import time
from pathlib import Path

t_start = time.perf_counter()
GC_TUNED = "--gc-tuned" in sys.argv
if GC_TUNED:
    import gc

    gc.disable()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bare_loop import bare_fit  # noqa: E402

args = [a for a in sys.argv[1:] if a != "--gc-tuned"]
if "--threads" in args:
    i = args.index("--threads")
    torch.set_num_threads(int(args[i + 1]))
    del args[i : i + 2]
device = torch.device(args[0] if args else "cpu")
with np.load(HERE.parent / "nntrain" / "data" / "digits.npz") as f:
    images, target = f["images"], f["target"]
x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
y = torch.from_numpy(target.astype(np.int64))
perm = np.random.RandomState(0).permutation(len(y))
te, va, tr = perm[:270], perm[270:540], perm[540:]  # nntrain's split sizes (1257 / 270 / 270)
mean, std = x[tr].mean(), x[tr].std()
xs = [((x[i] - mean) / std).to(device) for i in (tr, va, te)]
ys = [y[i].to(device) for i in (tr, va, te)]
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1),
    nn.BatchNorm2d(32),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1),
    nn.BatchNorm2d(64),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(256, 128),
    nn.ReLU(),
    nn.Linear(128, 10),
).to(device, memory_format=torch.channels_last)  # nntrain's layout for conv nets (train.channels_last: auto)
xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
if GC_TUNED:
    import torch._dynamo  # noqa: F401,E402  (what SGD's constructor imports: inside the pause, as in nntrain)

    gc.freeze()
    gc.enable()
r = bare_fit(
    model,
    xs[0],
    ys[0],
    xs[1],
    ys[1],
    xs[2],
    ys[2],
    epochs=20,
    batch_size=64,
    lr=0.05,
    momentum=0.9,
    nesterov=True,
    reg=1e-4,
    seed=0,
)
torch.save(model.state_dict(), "bare-model.pt")
print(f"test accuracy {r['test_acc']:.4f}")

# the pictures a user's script saves: learning curves and the test confusion matrix
from matplotlib.figure import Figure  # noqa: E402

fig = Figure(figsize=(15, 4.7))
ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
steps = np.arange(1, len(r["step_losses"]) + 1)
per_epoch = len(steps) // len(r["records"])
epochs = np.arange(1, len(r["records"]) + 1)
ax_loss.plot(steps, r["step_losses"], alpha=0.3, label="train loss (step)")
ax_loss.plot(epochs * per_epoch, [e["train_loss"] for e in r["records"]], label="train loss")
ax_loss.plot(epochs * per_epoch, [e["val_loss"] for e in r["records"]], label="val loss")
ax_loss.set_xlabel("step")
ax_loss.legend()
ax_acc.plot(epochs, [e["train_acc"] for e in r["records"]], label="train")
ax_acc.plot(epochs, [e["val_acc"] for e in r["records"]], label="val")
ax_acc.set_xlabel("epoch")
ax_acc.legend()
ax_lr.plot(epochs, [e["lr"] for e in r["records"]])
ax_lr.set_xlabel("epoch")
fig.suptitle(f"test accuracy {r['test_acc']:.4f}")
fig.savefig("bare-curves.png", dpi=100)
cm = np.bincount(ys[2].cpu().numpy() * 10 + r["test_pred"].numpy(), minlength=100).reshape(10, 10)
fig = Figure(figsize=(6, 5.5))
ax = fig.subplots()
ax.imshow(cm, cmap="Blues")
for (i, j), v in np.ndenumerate(cm):
    ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
ax.set_xticks(range(10))
ax.set_yticks(range(10))
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_title("test confusion")
fig.savefig("bare-confusion.png", dpi=100)
print(f"wall {time.perf_counter() - t_start:.2f}s")
if GC_TUNED:
    gc.freeze()
