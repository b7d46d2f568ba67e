"""Training checkpoints with orbax-checkpoint: save every N steps, keep the last K, resume exactly.

A checkpoint ``DIR/<step>/`` holds

- ``state``: the model's whole NNX state (weights, BatchNorm statistics, the
  NL-ADC levels, thresholds and ranges, calibration statistics, chip keys
  and the RNG stream keys and counters) and the state of every optimizer
  (moments, step counts that drive the schedules);
- ``meta`` (JSON): the step, the data position (``{"epoch", "offset"}`` of a
  `bskmq_jax.train.DataCursor`), the training config and seed, the
  programmed levels in readable form (``levels``), and ``compat``, what a
  run must match to resume from it (model, bit widths, level strategy ...).

Atomicity: orbax writes each checkpoint into
``DIR/<step>.orbax-checkpoint-tmp-<time>`` and renames it to ``DIR/<step>``
only when every file is written (a rename is atomic on POSIX file systems),
so a save killed midway leaves a temporary folder that is never listed,
restored or counted against ``keep``; it is deleted when the folder is
opened again. Restoring checks ``compat`` first and refuses a mismatch with a
one-line error naming the field.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
from flax import nnx

__all__ = ["CheckpointConfig", "Checkpoints", "levels_to_json"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """Where and how often a training run saves checkpoints."""

    directory: str  # folder of the step checkpoints (created if missing)
    every: int = 100  # save every N steps (and after the last step)
    keep: int = 3  # keep the last K checkpoints
    async_save: bool = True  # write in a background thread while training continues

    def __post_init__(self):
        if not isinstance(self.directory, str) or not self.directory:
            raise ValueError(f"directory: {self.directory!r} must be a non-empty path")
        for name in ("every", "keep"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: {v!r} must be an int >= 1")


def _jsonable(obj):
    """``obj`` as plain JSON (tuples become lists), for comparisons with stored metadata."""
    return json.loads(json.dumps(obj, default=str))


def levels_to_json(model: nnx.Module) -> dict:
    """The programmed NL-ADC levels of every layer as JSON-able lists."""
    from bskmq_jax.imc.control import get_levels

    out = {}
    for name, nl in get_levels(model).items():
        v = jax.device_get(nl)
        out[name] = {"bits": nl.bits, "levels": v.levels.tolist(), "thresholds": v.thresholds.tolist(),
                     "lo": float(v.lo), "hi": float(v.hi)}
    return out


def _shapes(tree) -> dict:
    """``{dotted path: shape}`` of a state tree or of orbax's metadata of one (PRNG keys as their key data)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            leaf = jax.eval_shape(jax.random.key_data, leaf)
        out[".".join(n for n in names if n != "value")] = tuple(getattr(leaf, "shape", ()))
    return out


def _target(model, opts: dict) -> dict:
    return {"model": nnx.state(model), "opt": {name: nnx.state(opt) for name, opt in opts.items()}}


class Checkpoints:
    """The checkpoints of one run (an orbax `CheckpointManager`).

    Args:
      cfg: directory, interval and retention.
      compat: JSON-able facts a resumed run must match (e.g. model spec, ADC
        bits, level strategy); stored with every checkpoint.
    """

    def __init__(self, cfg: CheckpointConfig, *, compat: dict | None = None):
        import orbax.checkpoint as ocp

        self.cfg = cfg
        self.every = cfg.every
        self.compat = _jsonable(compat or {})
        self.directory = Path(cfg.directory).absolute()
        self._ocp = ocp
        self._mgr = ocp.CheckpointManager(
            self.directory,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(
                max_to_keep=cfg.keep, create=True, cleanup_tmp_directories=True,
                enable_async_checkpointing=cfg.async_save,
            ),
        )

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending."""
        return sorted(self._mgr.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._mgr.latest_step()

    def save(self, step: int, model, opts: dict, *, data: dict, config: dict | None = None) -> None:
        """Saves the run's state at ``step`` (returns once the state is copied when async)."""
        ocp = self._ocp
        meta = {"step": int(step), "data": data, "config": config or {}, "compat": self.compat,
                "levels": levels_to_json(model)}
        self._mgr.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(_target(model, opts)), meta=ocp.args.JsonSave(_jsonable(meta))))

    def meta(self, step: int | None = None) -> dict:
        """The JSON metadata of a checkpoint (default: the latest)."""
        step = self._check_step(step)
        return self._mgr.restore(step, args=self._ocp.args.Composite(meta=self._ocp.args.JsonRestore())).meta

    def _check_step(self, step):
        steps = self.steps()
        if not steps:
            raise ValueError(f"resume: no complete checkpoint in {self.directory}")
        step = steps[-1] if step is None else int(step)
        if step not in steps:
            raise ValueError(f"resume: no checkpoint for step {step} in {self.directory}; it has steps {steps}")
        return step

    def check_compatible(self, meta: dict) -> None:
        """Raises ValueError naming the first field where ``meta['compat']`` differs from this run's."""
        stored = meta.get("compat", {})
        for key in sorted(set(stored) | set(self.compat)):
            if stored.get(key) != self.compat.get(key):
                raise ValueError(
                    f"resume: the checkpoint in {self.directory} (step {meta.get('step')}) was made with "
                    f"{key}={json.dumps(stored.get(key))}, this run has {key}={json.dumps(self.compat.get(key))}"
                )

    def _check_structure(self, step: int, target) -> None:
        """Refuses a checkpoint whose saved variables or shapes differ from ``target``'s, naming the first."""
        saved, here = _shapes(self._mgr.item_metadata(step)["state"]), _shapes(target)
        problems = [f"{k} is in the checkpoint, not in this run" for k in sorted(set(saved) - set(here))]
        problems += [f"{k} is in this run, not in the checkpoint" for k in sorted(set(here) - set(saved))]
        problems += [f"{k} has shape {saved[k]} there, {here[k]} here" for k in sorted(set(saved) & set(here)) if saved[k] != here[k]]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ValueError(f"resume: the checkpoint in {self.directory} (step {step}) does not fit this model and "
                             f"optimizer: {problems[0]}{more}")

    def restore(self, model, opts: dict, step: int | None = None) -> tuple[int, dict]:
        """Restores model and optimizer states in place from a checkpoint (default: the latest).

        Returns:
          ``(step, meta)``.

        Raises:
          ValueError: when there is no checkpoint, or it was made by an
            incompatible run (``compat`` or the state's structure differs).
        """
        ocp = self._ocp
        step = self._check_step(step)
        meta = self.meta(step)
        self.check_compatible(meta)
        target = _target(model, opts)
        self._check_structure(step, target)
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        restored = self._mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))).state
        nnx.update(model, restored["model"])
        for name, opt in opts.items():
            nnx.update(opt, restored["opt"][name])
        return step, meta

    def wait(self) -> None:
        """Blocks until background saves are written."""
        self._mgr.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager."""
        self._mgr.wait_until_finished()
        self._mgr.close()
