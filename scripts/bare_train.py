"""What `nntrain train` does on the default config, written as a bare script (no nntrain).

Load scikit-learn's digits, stratified 70/15/15 split, normalize with train statistics,
the default CNN (conv32-bn-relu-pool, conv64-bn-relu-pool, fc128, fc10), SGD with Nesterov
momentum, cosine schedule, λ=1e-4 in the loss, channels-last layout, 20 epochs, best-val model tested once and
saved. The yardstick for `nntrain train`'s whole-process wall time and peak memory
(scripts/bench.py --only process).

    python scripts/bare_train.py [cpu|cuda] [--gc-tuned] [--threads N]

``--gc-tuned`` handles Python's cyclic collector as ``nntrain train`` does (paused during
start-up, the start-up heap frozen at training start and at exit), so the comparison with
it isolates nntrain's own work (CLI, config, run directory, pictures). ``--threads N`` sets
torch's intra-op threads (default: torch's, one per core); ``--threads 1`` is what nntrain's
thread policy gives this small work when another process was busy as it started (docs/threads.md).
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
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_loop import bare_fit  # noqa: E402

args = [a for a in sys.argv[1:] if a != "--gc-tuned"]
if "--threads" in args:
    i = args.index("--threads")
    torch.set_num_threads(int(args[i + 1]))
    del args[i : i + 2]
device = torch.device(args[0] if args else "cpu")
d = load_digits()
x = torch.from_numpy(d.images.astype(np.float32)).unsqueeze(1)
y = torch.from_numpy(d.target.astype(np.int64))
idx = np.arange(len(y))
rest, te = train_test_split(idx, test_size=0.15, random_state=0, stratify=d.target)
tr, va = train_test_split(rest, test_size=0.15 / 0.85, random_state=1, stratify=d.target[rest])
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
print(f"test accuracy {r['test_acc']:.4f}  wall {time.perf_counter() - t_start:.2f}s")
if GC_TUNED:
    gc.freeze()
