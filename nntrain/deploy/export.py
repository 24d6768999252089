"""``nntrain export``: a checkpoint → ONNX, a ``torch.export`` program (.pt2) or safetensors
weights + JSON sidecar, each with the classes and normalization it needs. Every file is written
under a temporary name, checked for parity against the checkpoint on the run's test split, and
renamed into place only when the check passes."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from nntrain.deploy.source import require, softmax
from nntrain.errors import NntrainError
from nntrain.pipeline.reopen import read_checkpoint, split_batches
from nntrain.runs.files import default_mode, refuse_overwrite
from nntrain.training.metrics import checkpoint_tta, with_tta

FORMATS = {"onnx": ".onnx", "pt2": ".pt2", "safetensors": ".safetensors"}
NEEDS = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "pt2": (), "safetensors": ("safetensors",)}
PREPROCESSING = (
    "an image file: PIL.Image.open, ImageOps.exif_transpose, convert('L' if C == 1 else 'RGB'), resize((W, H), "
    "Image.Resampling.BILINEAR) straight from the full-resolution decode (no JPEG draft scaling), then "
    "(pixel / 255 - mean) / std per channel"
)
MAX_PROB_DIFF = 1e-5
PARITY_INPUTS = 1000


EXPORTERS = {
    "onnx": "torch.onnx.export (dynamo)",
    "pt2": "torch.export",
    "safetensors": "the safetensors writer",
}


class ParityFailed(NntrainError):
    """The exported model disagrees with the checkpoint: a negative verdict (exit 1)."""

    exit_code = 1


@dataclass
class Parity:
    n: int
    max_prob_diff: float
    top1_agreement: float
    on: str  # which inputs: "test split", ...

    @property
    def ok(self) -> bool:
        return self.max_prob_diff <= MAX_PROB_DIFF and self.top1_agreement == 1.0

    def line(self) -> str:
        return (
            f"parity on {self.n} {self.on} inputs: max |Δprobability| {self.max_prob_diff:.2e} "
            f"(limit {MAX_PROB_DIFF:.0e}), top-1 agreement {self.top1_agreement:.2%}"
        )


@dataclass
class Exported:
    fmt: str
    files: list[Path]
    parity: Parity
    seconds: float  # export + parity check


def metadata(ckpt: dict[str, Any], test_accuracy: float | None) -> dict[str, Any]:
    """What a user of the exported file needs besides its weights (mean/std on the pixel/255 scale)."""
    return {
        "tta": checkpoint_tta(ckpt),
        "classes": list(ckpt["classes"]),
        "mean": [float(v) / 255 for v in ckpt["norm_mean"]],
        "std": [float(v) / 255 for v in ckpt["norm_std"]],
        "input_shape": [int(v) for v in ckpt["input_shape"]],
        "preprocessing": PREPROCESSING,
        "nntrain_version": ckpt.get("versions", {}).get("nntrain") or _version(),
        "test_accuracy": test_accuracy,
    }


def _version() -> str:
    import nntrain

    return nntrain.__version__


def reference_inputs(ckpt: dict[str, Any], model: Any) -> tuple[np.ndarray, float | None, str]:
    """(up to 1,000 normalized inputs of the run's test split, the model's test accuracy, their name).

    Only the test split is rebuilt (``reopen.split_batches``: same config and seed → same split), normalized
    with the checkpoint's own statistics; a run whose data cannot be rebuilt gets one line saying what to do."""
    import torch

    try:
        name, _, batches = split_batches(ckpt, 256)
        xs, correct, n = [], 0, 0
        with torch.inference_mode():
            for xb, yb in batches:
                correct += int((model(xb).argmax(1) == yb).sum())
                n += len(yb)
                if sum(len(x) for x in xs) < PARITY_INPUTS:
                    xs.append(xb)
    except (NntrainError, ValueError, KeyError, TypeError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NntrainError(
            f"export checks parity on the run's test split, but the run's data cannot be rebuilt ({reason}); make "
            "the dataset available again where the run's config (data.dataset, data.root) says, then rerun export; "
            "nothing was written"
        ) from None
    on = f"{name} split"
    x = torch.cat(xs)[:PARITY_INPUTS].numpy() if xs else np.empty((0, *ckpt["input_shape"]), np.float32)
    return np.ascontiguousarray(x, dtype=np.float32), (correct / n if n and name == "test" else None), on


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The exporters' progress lines and warnings (torch's loggers, prints) stay out of the terminal: the
    command reports the outcome itself (library code never prints)."""
    torch_log = logging.getLogger("torch")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        torch_log.setLevel(level)


def failure(e: BaseException) -> str:
    """An exporter's exception → its one telling line (torch.onnx puts it under '## Exception summary')."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "## Exception summary" in lines and lines.index("## Exception summary") + 1 < len(lines):
        lines = lines[lines.index("## Exception summary") + 1 :]
    line = lines[0] if lines else ""
    line = re.sub(r"^<class '[\w.]*\.(\w+)'>: ", r"\1: ", line)
    return (line if ":" in line[:40] else f"{type(e).__name__}: {line}")[:300]


# ---- writers: model, example input, metadata, temporary path → files written -------------------------------


def _write_onnx(model, example, meta: dict[str, Any], tmp: Path) -> list[Path]:
    import onnx
    import torch

    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,  # torch.export-based (the default in torch ≥ 2.9); exact for these Sequential models
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    proto = program.model_proto
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(tmp))
    return [tmp]


def _write_pt2(model, example, meta: dict[str, Any], tmp: Path) -> list[Path]:
    import torch

    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp), extra_files={"nntrain.json": json.dumps(meta)})
    return [tmp]


def _write_safetensors(model, example, meta: dict[str, Any], tmp: Path, *, config: dict[str, Any]) -> list[Path]:
    from safetensors.torch import save_file

    net = getattr(model, "net", model)  # the weights only: flip-TTA (meta["tta"]) is applied by whoever runs them
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp), metadata={"nntrain": json.dumps(meta)})
    sidecar = tmp.with_suffix(".json")
    sidecar.write_text(json.dumps({**meta, "model": config["model"]}, indent=2) + "\n", encoding="utf-8")
    return [tmp, sidecar]


# ---- readers: the written file(s) → logits for normalized inputs (what parity runs) ------------------------


def _run_onnx(files: list[Path], x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _run_pt2(files: list[Path], x: np.ndarray) -> np.ndarray:
    import torch

    module = torch.export.load(str(files[0])).module()
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def _run_safetensors(files: list[Path], x: np.ndarray) -> np.ndarray:
    import torch
    from safetensors.torch import load_file

    from nntrain.config import ModelConfig
    from nntrain.models import build_model

    side = json.loads(files[1].read_text(encoding="utf-8"))
    model = build_model(ModelConfig.model_validate(side["model"]), tuple(side["input_shape"]), len(side["classes"]))
    model.load_state_dict(load_file(str(files[0])))
    with torch.inference_mode():
        return with_tta(model.eval(), side.get("tta", "none"))(torch.from_numpy(x)).numpy()


RUNNERS: dict[str, Callable[[list[Path], np.ndarray], np.ndarray]] = {
    "onnx": _run_onnx,
    "pt2": _run_pt2,
    "safetensors": _run_safetensors,
}


def default_out(source: Path, ckpt_path: Path, fmt: str) -> Path:
    """``<run name>.<ext>`` in the current directory (a run directory is never written into)."""
    name = source.name if source.is_dir() else ckpt_path.parent.name or ckpt_path.stem
    return Path.cwd() / f"{name}{FORMATS[fmt]}"


def check_out(out: Path, fmt: str, force: bool = False) -> list[Path]:
    targets = [out] + ([out.with_suffix(".json")] if fmt == "safetensors" else [])
    for t in targets:
        if not t.parent.is_dir():
            raise NntrainError(f"--out {out}: the directory '{t.parent}' does not exist; create it or choose another")
        if not os.access(t.parent, os.W_OK):
            raise NntrainError(f"--out {out}: the directory '{t.parent}' is not writable; choose another path")
        refuse_overwrite(t, "--out", force)
    return targets


def choose_format(fmt: str | None, out: str | Path | None) -> str:
    """``--format`` and ``--out``'s extension agree: without --format the extension decides (default onnx); a
    file name whose extension is another format's (or none of them) is refused, never written under a wrong
    name."""
    if fmt is not None and fmt not in FORMATS:
        raise NntrainError(f"--format {fmt!r}: allowed: {', '.join(FORMATS)}")
    if out is None:
        return fmt or "onnx"
    suffix = Path(out).suffix.lower()
    by_suffix = {ext: name for name, ext in FORMATS.items()}
    if fmt is None:
        if suffix not in by_suffix:
            raise NntrainError(
                f"--out {out}: the extension '{suffix}' names no export format; end it in "
                f"{', '.join(FORMATS.values())}, or pass --format"
            )
        return by_suffix[suffix]
    if suffix != FORMATS[fmt]:
        hint = f" or pass --format {by_suffix[suffix]}" if suffix in by_suffix else ""
        raise NntrainError(
            f"--out {out}: a --format {fmt} file must end in {FORMATS[fmt]}; name it "
            f"'{Path(out).with_suffix(FORMATS[fmt]).name}'{hint}"
        )
    return fmt


def export(
    source: str | Path, fmt: str | None = None, out: str | Path | None = None, *, force: bool = False
) -> Exported:
    fmt = choose_format(fmt, out)
    for name in NEEDS[fmt]:
        require(name, what=f"export --format {fmt}")
    import torch

    started = time.perf_counter()
    source = Path(source)
    path, ckpt, model = read_checkpoint(source)
    model = with_tta(model, checkpoint_tta(ckpt))  # eval.tta: flip is part of the exported graph (onnx, pt2)
    target = Path(out) if out is not None else default_out(source, path, fmt)
    targets = check_out(target, fmt, force)
    x, accuracy, on = reference_inputs(ckpt, model)
    meta = metadata(ckpt, accuracy)
    example = torch.from_numpy(x[:2]) if len(x) >= 2 else torch.zeros(2, *meta["input_shape"])
    with torch.inference_mode():
        expected = softmax(model(torch.from_numpy(x)).numpy())
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{FORMATS[fmt]}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    written: list[Path] = [tmp, tmp.with_suffix(".json")]
    try:
        try:
            with quiet():
                if fmt == "onnx":
                    written = _write_onnx(model, example, meta, tmp)
                elif fmt == "pt2":
                    written = _write_pt2(model, example, meta, tmp)
                else:
                    written = _write_safetensors(model, example, meta, tmp, config=ckpt["config"])
        except OSError as e:
            raise NntrainError(f"cannot write '{target}': {e.strerror or e}; choose another --out") from None
        except NntrainError:
            raise
        except Exception as e:  # the exporter's own exception types: one line naming what it could not export
            raise NntrainError(
                f"{fmt} export failed in {EXPORTERS[fmt]}, nothing written: {failure(e)}; this model cannot be "
                f"exported as {fmt}; try another --format (safetensors saves the weights of any model)"
            ) from None
        with quiet():
            got = softmax(np.asarray(RUNNERS[fmt](written, x), dtype=np.float32))
        parity = Parity(
            n=len(x),
            max_prob_diff=float(np.abs(got - expected).max()) if len(x) else 0.0,
            top1_agreement=float((got.argmax(1) == expected.argmax(1)).mean()) if len(x) else 1.0,
            on=on,
        )
        if not parity.ok:
            raise ParityFailed(f"{fmt} export disagrees with the checkpoint, nothing written: {parity.line()}")
        for src, dst in zip(written, targets):
            default_mode(src)  # the exporters wrote into mkstemp's 0600 file
            os.replace(src, dst)
    finally:
        for f in written + [tmp]:
            f.unlink(missing_ok=True)
    return Exported(fmt, targets, parity, time.perf_counter() - started)
