"""Sweep specifications: a YAML file validated into a :class:`SweepSpec` (errors name the bad key).

Objectives are metrics of the evaluation protocol (``eval/*``, logged by
:class:`~faceswap_pl.callbacks.evaluation.EvaluationCallback` with a recognizer that training never sees):
a spec that would rank by the training identity encoder's own view (``val/id_cos``) or by a training loss
is refused with the reason, since the generator is optimised against exactly those numbers. One objective
gives a single-objective study; a list gives Optuna's multi-objective study (no pruning: Optuna cannot
prune those). ``repeats: N`` trains every configuration with N seeds (``seed_everything`` and the data seed:
``spec.seed``, ``spec.seed + 1``, ...) and ranks it by the mean.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faceswap_pl.configs import resolve_config, shipped_names
from faceswap_pl.errors import FaceSwapError

REPO_ROOT = Path(__file__).resolve().parents[2]
TOP_KEYS = {"name", "base_config", "overrides", "space", "objective", "pruner", "sampler", "n_trials", "budget",
            "experiment", "seed", "max_retries", "repeats", "repeat_keys"}
#: the evaluation callback's metrics and which way is better
EVAL_METRICS = {"id_top1": "maximize", "id_top5": "maximize", "id_cos": "maximize", "select": "maximize",
                "expression": "minimize", "eye": "minimize", "pose_deg": "minimize", "shape": "minimize"}
EVALUATION_CALLBACK = "faceswap_pl.callbacks.evaluation.EvaluationCallback"
DEFAULT_REPEAT_KEYS = ("seed_everything", "data.init_args.seed")
REQUIRED_KEYS = ("name", "base_config", "space", "objective", "n_trials")
PARAM_TYPES = ("categorical", "int", "float")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median")


def _fail(source: str, key: str, problem: str, fix: str) -> FaceSwapError:
    return FaceSwapError(f"Sweep spec {source}: `{key}` {problem}; {fix}.")


@dataclass
class SweepSpec:
    """A validated sweep; ``base_config`` paths are absolute."""

    name: str
    base_config: list[str]
    space: dict[str, dict[str, Any]]
    objectives: list[list[str]]   # [[metric, direction], ...]
    n_trials: int
    overrides: list[str] = field(default_factory=list)
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    sampler: str = "tpe"
    budget: dict[str, Any] = field(default_factory=dict)
    experiment: str = ""
    seed: int = 0
    max_retries: int = 2
    repeats: int = 1
    repeat_keys: list[str] = field(default_factory=lambda: list(DEFAULT_REPEAT_KEYS))
    source: str = ""

    @property
    def metric(self) -> str:
        """The first (for single-objective studies the only) objective's metric."""
        return self.objectives[0][0]

    @property
    def direction(self) -> str:
        return self.objectives[0][1]

    @property
    def metrics(self) -> list[str]:
        return [metric for metric, _ in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [direction for _, direction in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def seeds(self) -> list[int]:
        """The seeds each configuration is trained with (one per repeat)."""
        return [self.seed + r for r in range(self.repeats)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SweepSpec":
        data = json.loads(text)
        if "metric" in data:  # a study created before objectives became a list
            data["objectives"] = [[data.pop("metric"), data.pop("direction")]]
        return cls(**data)

    def fixed_args(self) -> list[str]:
        """The CLI arguments every trial gets: configs, fixed overrides and the budget."""
        args: list[str] = []
        for config in self.base_config:
            args += ["--config", config]
        args += self.overrides
        for key, value in self.budget.items():
            dotted = "model.max_iterations" if key == "max_iterations" else key if "." in key else f"trainer.{key}"
            args.append(f"--{dotted}={cli_value(value)}")
        return args

    def grid(self) -> dict[str, list[Any]]:
        return {name: list(p["choices"]) if p["type"] == "categorical" else list(range(p["low"], p["high"] + 1))
                for name, p in self.space.items()}


def cli_value(value: Any) -> str:
    """A value as LightningCLI reads it on the command line."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _number(source, key, value, kind):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise _fail(source, key, f"is {value!r}, not {'an integer' if kind is int else 'a number'}",
                    f"give {'an integer' if kind is int else 'a number'}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(source, key, f"is {value!r}", "give a finite number")
    return value


def _resolve_config(source: str, spec_dir: Path, index: int, value: Any) -> str:
    key = f"base_config[{index}]"
    if not isinstance(value, str) or not value:
        raise _fail(source, key, f"is {value!r}, not a path", "give a config path relative to the repo or the spec")
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [REPO_ROOT / path, spec_dir / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    shipped = resolve_config(value, "experiments")  # a shipped config by name: demo, experiments/demo.yaml
    if Path(shipped).is_file():
        return str(Path(shipped).resolve())
    raise _fail(source, key, f"names {value!r}, which is not a file",
                "give a config path relative to the repository root or to the spec file, or a shipped config "
                f"({', '.join(shipped_names('experiments'))})")


def _param(source: str, name: str, raw: Any) -> dict[str, Any]:
    key = f"space.{name}"
    if not isinstance(raw, dict):
        raise _fail(source, key, "is not a mapping", "write {type: categorical, choices: [...]} or "
                    "{type: int|float, low: L, high: H}")
    unknown = set(raw) - {"type", "choices", "low", "high", "log", "step"}
    if unknown:
        raise _fail(source, f"{key}.{sorted(unknown)[0]}", "is not a parameter field",
                    "use type, choices, low, high, log or step")
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        raise _fail(source, f"{key}.type", f"is {kind!r}", f"use one of {', '.join(PARAM_TYPES)}")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(source, f"{key}.choices", "is missing or empty", "list at least one choice")
        if any(not isinstance(c, (str, int, float, bool)) and c is not None for c in choices):
            raise _fail(source, f"{key}.choices", "holds a non-scalar choice", "use strings, numbers or booleans")
        if len(set(map(json.dumps, choices))) != len(choices):
            raise _fail(source, f"{key}.choices", "repeats a choice", "list each choice once")
        extra = set(raw) - {"type", "choices"}
        if extra:
            raise _fail(source, f"{key}.{sorted(extra)[0]}", "does not apply to a categorical parameter",
                        "remove it")
        return {"type": kind, "choices": choices}
    number = int if kind == "int" else float
    for bound in ("low", "high"):
        if bound not in raw:
            raise _fail(source, f"{key}.{bound}", "is missing", f"give the {bound} bound of the {kind} range")
        _number(source, f"{key}.{bound}", raw[bound], number)
    low, high = raw["low"], raw["high"]
    if low > high:
        raise _fail(source, f"{key}.low", f"({low}) is above high ({high})", "swap the bounds")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise _fail(source, f"{key}.log", f"is {log!r}", "write true or false")
    if log and low <= 0:
        raise _fail(source, f"{key}.low", f"is {low} but log: true needs a positive range",
                    "raise low above 0 or set log: false")
    if "choices" in raw:
        raise _fail(source, f"{key}.choices", f"does not apply to an {kind} parameter", "remove it")
    out = {"type": kind, "low": number(low), "high": number(high), "log": log}
    if raw.get("step") is not None:
        out["step"] = _number(source, f"{key}.step", raw["step"], number)
    return out


def validate_spec(raw: Any, source: str = "<spec>", spec_dir: Path | None = None) -> SweepSpec:
    """Check a parsed spec mapping; raise :class:`FaceSwapError` naming the first bad key."""
    spec_dir = spec_dir or Path.cwd()
    if not isinstance(raw, dict):
        raise FaceSwapError(f"Sweep spec {source} is not a YAML mapping; write keys such as name, base_config, "
                            f"space, objective and n_trials.")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise _fail(source, unknown[0], "is not a sweep spec key", f"use {', '.join(sorted(TOP_KEYS))}")
    for key in REQUIRED_KEYS:
        if key not in raw or raw[key] is None:
            raise _fail(source, key, "is missing", "add it (see sweeps/tiny_cpu.yaml)")
    name = raw["name"]
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise _fail(source, "name", f"is {name!r}", "use letters, digits, '-', '_' or '.'")
    configs = raw["base_config"]
    configs = [configs] if isinstance(configs, str) else configs
    if not isinstance(configs, list) or not configs:
        raise _fail(source, "base_config", "is not a list of config paths", "list at least one config file")
    base_config = [_resolve_config(source, spec_dir, i, c) for i, c in enumerate(configs)]

    overrides = raw.get("overrides") or []
    if isinstance(overrides, dict):
        overrides = [f"--{k}={cli_value(v)}" for k, v in overrides.items()]
    if not isinstance(overrides, list) or any(not isinstance(o, str) or not o.startswith("--") for o in overrides):
        raise _fail(source, "overrides", "is not a list of `--key=value` strings or a {key: value} mapping",
                    "write e.g. ['--trainer.precision=32-true']")

    space = raw["space"]
    if not isinstance(space, dict) or not space:
        raise _fail(source, "space", "is empty or not a mapping", "give at least one {param: {type: ...}} entry")
    for name_ in space:
        if not isinstance(name_, str) or not all(part.isidentifier() for part in name_.split(".")) or "." not in name_:
            raise _fail(source, f"space.{name_}", "is not a dotted LightningCLI key",
                        "name the parameter like model.backbone or data.init_args.batch_size")
    space = {k: _param(source, k, v) for k, v in space.items()}

    objectives = _objectives(source, raw["objective"])

    n_trials = raw["n_trials"]
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise _fail(source, "n_trials", f"is {n_trials!r}", "give a positive integer")

    pruner = raw.get("pruner") or "none"
    if isinstance(pruner, str):
        pruner = {"type": pruner}
    if isinstance(pruner, dict) and pruner.get("type") == "median" and len(objectives) > 1:
        raise _fail(source, "pruner", "is median but the study has several objectives, which Optuna cannot prune",
                    "set pruner: none or rank by one objective")
    if not isinstance(pruner, dict) or pruner.get("type") not in PRUNERS:
        raise _fail(source, "pruner", f"is {raw.get('pruner')!r}",
                    "use none or {type: median, n_startup_trials: N, n_warmup_steps: N}")
    extra = set(pruner) - {"type", "n_startup_trials", "n_warmup_steps", "interval_steps"}
    if extra or (pruner["type"] == "none" and len(pruner) > 1):
        bad = sorted(extra)[0] if extra else sorted(set(pruner) - {"type"})[0]
        raise _fail(source, f"pruner.{bad}", "is not an option of this pruner",
                    "median takes n_startup_trials, n_warmup_steps and interval_steps")
    for option in ("n_startup_trials", "n_warmup_steps", "interval_steps"):
        if option in pruner:
            value = pruner[option]
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if option == "interval_steps" else 0):
                raise _fail(source, f"pruner.{option}", f"is {value!r}", "give a non-negative integer")

    sampler = raw.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise _fail(source, "sampler", f"is {sampler!r}", f"use one of {', '.join(SAMPLERS)}")
    if sampler == "grid":
        for key, p in space.items():
            if p["type"] == "float":
                raise _fail(source, f"space.{key}", "is a float range, which a grid cannot enumerate",
                            "make it categorical or use sampler: tpe")

    budget = raw.get("budget") or {}
    if not isinstance(budget, dict):
        raise _fail(source, "budget", "is not a mapping", "write e.g. {max_iterations: 2000}")
    if "max_iterations" in budget:
        value = budget["max_iterations"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(source, "budget.max_iterations", f"is {value!r}", "give a positive integer")

    experiment = raw.get("experiment") or f"sweep-{name}"
    if not isinstance(experiment, str):
        raise _fail(source, "experiment", f"is {experiment!r}", "give an MLflow experiment name")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fail(source, "seed", f"is {seed!r}", "give an integer")
    max_retries = raw.get("max_retries", 2)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise _fail(source, "max_retries", f"is {max_retries!r}", "give a non-negative integer")
    repeats = raw.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise _fail(source, "repeats", f"is {repeats!r}", "give the number of seeds per configuration (1 or more)")
    repeat_keys = raw.get("repeat_keys", list(DEFAULT_REPEAT_KEYS))
    if not isinstance(repeat_keys, list) or not repeat_keys or any(not isinstance(k, str) or not k for k in repeat_keys):
        raise _fail(source, "repeat_keys", f"is {repeat_keys!r}",
                    "list the config keys the seed goes to, e.g. [seed_everything, data.init_args.seed]")
    _check_evaluation_callback(source, base_config, overrides)
    return SweepSpec(name=name, base_config=base_config, space=space, objectives=objectives,
                     n_trials=n_trials, overrides=overrides, pruner=pruner, sampler=sampler, budget=budget,
                     experiment=experiment, seed=seed, max_retries=max_retries, repeats=repeats,
                     repeat_keys=list(repeat_keys), source=source)


def _objectives(source: str, raw: Any) -> list[list[str]]:
    """``objective`` (a mapping, or a list of them) -> ``[[metric, direction], ...]``, evaluation metrics only."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise _fail(source, "objective", "is an empty list", "give {metric: eval/id_top1, direction: maximize}")
    objectives = []
    for i, objective in enumerate(items):
        key = "objective" if not isinstance(raw, list) else f"objective[{i}]"
        if not isinstance(objective, dict):
            raise _fail(source, key, "is not a mapping", "write {metric: eval/id_top1, direction: maximize}")
        extra = set(objective) - {"metric", "direction"}
        if extra:
            raise _fail(source, f"{key}.{sorted(extra)[0]}", "is not an objective field", "use metric and direction")
        metric = objective.get("metric")
        if not isinstance(metric, str) or not metric:
            raise _fail(source, f"{key}.metric", "is missing", "name an evaluation metric such as eval/id_top1")
        _check_objective_metric(source, f"{key}.metric", metric)
        direction = objective.get("direction")
        if direction not in ("maximize", "minimize"):
            raise _fail(source, f"{key}.direction", f"is {direction!r}", "use maximize or minimize")
        better = EVAL_METRICS[metric[len("eval/"):]]
        if direction != better:
            raise _fail(source, f"{key}.direction", f"is {direction} but {metric} is better when "
                        f"{'higher' if better == 'maximize' else 'lower'}", f"use {better}")
        if metric in [m for m, _ in objectives]:
            raise _fail(source, key, f"repeats {metric}", "list each objective once")
        objectives.append([metric, direction])
    return objectives


def _check_objective_metric(source: str, key: str, metric: str) -> None:
    """Only the evaluation protocol's metrics may rank trials (module docstring)."""
    allowed = ", ".join(f"eval/{m}" for m in EVAL_METRICS)
    if metric.startswith("val/id"):
        raise _fail(source, key, f"is {metric}, measured by the training identity encoder -- the network the "
                    f"generator is optimised against, so a sweep would learn to please it rather than to swap "
                    f"identities", f"rank by an evaluation metric of the independent recognizer: {allowed}")
    if not metric.startswith("eval/"):
        raise _fail(source, key, f"is {metric}, a training or validation number rather than a metric of the "
                    f"evaluation protocol (independent recognizer, fixed held-out pairs)", f"rank by one of {allowed}")
    if metric[len("eval/"):] not in EVAL_METRICS:
        raise _fail(source, key, f"is {metric}, which the evaluation callback does not log", f"use one of {allowed}")


def _check_evaluation_callback(source: str, base_config: list[str], overrides: list[str]) -> None:
    """The objectives are logged by the evaluation callback: the trial configs must have one."""
    if any(EVALUATION_CALLBACK in override for override in overrides):
        return
    for path in base_config:
        try:
            config = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # LightningCLI reports unreadable configs with their line
        callbacks = ((config.get("trainer") or {}).get("callbacks") or []) if isinstance(config, dict) else []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if any(isinstance(c, dict) and c.get("class_path") == EVALUATION_CALLBACK for c in callbacks):
            return
    raise _fail(source, "base_config", f"has no {EVALUATION_CALLBACK} among its trainer callbacks, so the eval/* "
                "objectives would never be logged", "use a config that has one (experiments/ghost.yaml) or add it "
                "to the spec's overrides")


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec YAML file."""
    path = Path(resolve_config(str(path), "sweeps"))
    if not path.is_file():
        raise FaceSwapError(f"Sweep spec {path} not found; give the path of a YAML spec or the name of a shipped "
                            f"one ({', '.join(shipped_names('sweeps'))}).")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise FaceSwapError(f"Sweep spec {path} is not valid YAML{where}; fix the syntax.") from None
    return validate_spec(raw, str(path), path.resolve().parent)
