"""The Optuna study behind ``nntrain cv``: its storage (SQLite in the cv directory by default,
or any URL Optuna's RDB storage takes: ``sqlite:///…``, ``postgresql://…``), sampler and pruner,
and the check that every process sharing a study searches the same space.

Every bad ``--storage`` (unparsable, unreachable, missing driver) and a study that exists with
another search space become a ``ConfigError`` naming the URL without its password.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nntrain.cv.plan import Plan
from nntrain.errors import ConfigError

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "asha", "none")
DRIVERS = {"postgresql": ("postgres", "psycopg"), "mysql": ("mysql", "pymysql")}


def safe_url(url: str) -> str:
    """The URL with its password masked (for messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable: show the scheme only
        return url.split("://", 1)[0] + "://…" if "://" in url else "(unparsable URL)"


def default_storage(cv_path: Path) -> str:
    return f"sqlite:///{(Path(cv_path) / 'study.db').resolve()}"


def open_storage(url: str) -> Any:
    """Optuna's RDB storage for ``url``; every failure a ConfigError that says what to do."""
    import optuna
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # library code: no INFO lines on stderr
    shown = safe_url(url)
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    connect: dict[str, Any] = {"timeout": 60} if scheme == "sqlite" else {"connect_timeout": 10}
    if scheme not in ("sqlite", "postgresql", "mysql"):
        raise ConfigError(f"--storage {shown}: use sqlite:///path/study.db or postgresql://user:password@host/database")
    last: Exception | None = None
    for attempt in range(3):  # two processes creating the tables at once: one may lose the race
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect})
        except (ImportError, NoSuchModuleError) as e:
            extra, driver = DRIVERS.get(scheme, ("", ""))
            hint = f"pip install 'nntrain[{extra}]' (or {driver})" if extra else "install its SQLAlchemy driver"
            raise ConfigError(f"--storage {shown}: the database driver is missing ({e}); {hint}") from None
        except ArgumentError:
            raise ConfigError(
                f"--storage {shown}: not a database URL; e.g. sqlite:///study.db or postgresql://user@host/db"
            ) from None
        except (SQLAlchemyError, ValueError) as e:
            last = e
            time.sleep(0.5 * (attempt + 1))
    msg = str(getattr(last, "orig", None) or last).strip().splitlines()[0] if last else ""
    pw = _password(url)
    if pw:
        msg = msg.replace(pw, "***")
    hint = (
        ""
        if pw or scheme == "sqlite"
        else "; a password goes into the URL (with --resume too: a cv directory's plan.json keeps none) or, for "
        "PostgreSQL, into PGPASSWORD or ~/.pgpass"
    )
    raise ConfigError(
        f"--storage {shown}: cannot open the database ({msg}); check that the server runs and that host, port, "
        f"user, password and database are right{hint}"
    )


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:
        return None


def make_sampler(name: str, plan: Plan, seed: int | None) -> Any:
    import optuna

    if name == "grid":
        from nntrain.cv.space import grid_choices

        class AskTellGrid(optuna.samplers.GridSampler):
            def after_trial(self, study, trial, state, values):  # noqa: ANN001
                """GridSampler stops study.optimize when the grid is done; ask-and-tell checks that itself."""

        return AskTellGrid({k: grid_choices(v) for k, v in plan.grid.items()}, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str, epochs: int) -> Any:
    """The pruner of a search whose fold 0 trains ``epochs`` (E) epochs, on the steps of ``pruning``
    (fold 0's epoch e: step e-1; after fold f ≥ 1: step E-1+f).

    median: prune a trial whose best value so far is below the median of the complete trials' values
    at the same step, from the 4th complete trial on, and not before the middle of fold 0 (epoch
    ⌈E/2⌉): early epochs rank trials by how fast they learn (mostly their learning rate) more than by
    where they end. asha: asynchronous successive halving, one step as the unit of resource (rungs at
    steps 1, 3, 9, ...)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=(epochs - 1) // 2)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def check_choices(plan: Plan, sampler: str, pruner: str) -> None:
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler!r}: use tpe, random or grid")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner!r}: use median, asha or none")
    if sampler == "grid" and plan.space:
        raise ConfigError(
            "--sampler grid needs values, not ranges: give --grid key=v1,v2,... "
            "or use --sampler tpe|random with --sample"
        )


def open_study(plan: Plan, url: str, *, seed: int | None) -> Any:
    """The study ``plan.study`` in ``url`` (created if new); refused when it was started with another space."""
    import optuna

    storage = open_storage(url)
    sampler, pruner = make_sampler(plan.sampler, plan, seed), make_pruner(plan.pruner, plan.first_fold_epochs())
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=plan.study,
            sampler=sampler,
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,
        )
    except Exception as e:  # e.g. the database went away between the two calls
        raise ConfigError(f"--storage {safe_url(url)}: cannot create study {plan.study!r} ({e})") from None
    mine = json.loads(json.dumps(plan.fingerprint()))
    theirs = study.user_attrs.get("nntrain_space")
    if theirs is None:
        study.set_user_attr("nntrain_space", mine)
    elif theirs != mine:
        diff = sorted(k for k in mine if mine.get(k) != theirs.get(k))
        raise ConfigError(
            f"study {plan.study!r} in {safe_url(url)} was started with another search space (differs in: "
            f"{', '.join(diff)}); start a new study with another --study NAME, or delete this one: "
            f"optuna delete-study --storage URL --study-name {plan.study}"
        )
    return study
