"""The quantization seam of every model: one spec, resolved per layer by dotted name.

A model takes one ``quant`` argument: None (a float model), an `IMCConfig`
(every converted layer uses it) or a `QuantSpec` (a default plus per-layer
overrides by name pattern). Models build every converted layer through a
`LayerFactory`, which resolves the spec for that layer's dotted name (its
NNX attribute path, e.g. ``"layer1.0.conv2"``) and, when the model is
finished, checks that every override pattern matched a layer and that the
names it was given are the real attribute paths.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from flax import nnx

from bskmq_jax.imc.config import IMCConfig
from bskmq_jax.imc.control import imc_layers
from bskmq_jax.imc.layers import IMCConv, IMCDense, IMCMatmul

__all__ = ["QuantSpec", "LayerFactory"]


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """Crossbar configs for a model's converted layers.

    Attributes:
      default: config of every converted layer no override matches (None:
        digital).
      overrides: ``(pattern, config)`` pairs; ``pattern`` is an `fnmatch`
        glob on dotted layer names (``"conv1"``, ``"layer4.*"``,
        ``"*.attention.*"``); ``config`` None keeps the layer digital. The
        first matching pattern wins. A pattern that matches no layer is an
        error when the model is built.
    """

    default: IMCConfig | None = IMCConfig()
    overrides: tuple[tuple[str, IMCConfig | None], ...] = ()

    def __post_init__(self):
        if self.default is not None and not isinstance(self.default, IMCConfig):
            raise ValueError(f"default: expected an IMCConfig or None, got {type(self.default).__name__}")
        if isinstance(self.overrides, dict):
            object.__setattr__(self, "overrides", tuple(self.overrides.items()))
        for item in self.overrides:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError(f"overrides: expected (pattern, IMCConfig | None) pairs, got {item!r}")
            if item[1] is not None and not isinstance(item[1], IMCConfig):
                raise ValueError(f"overrides: {item[0]!r} maps to {type(item[1]).__name__}, expected an IMCConfig or None")

    @classmethod
    def coerce(cls, quant) -> "QuantSpec | None":
        """Accepts None, an `IMCConfig` or a `QuantSpec`."""
        if quant is None or isinstance(quant, QuantSpec):
            return quant
        if isinstance(quant, IMCConfig):
            return cls(default=quant)
        raise ValueError(f"quant: expected None, an IMCConfig or a QuantSpec, got {type(quant).__name__}")

    def resolve(self, name: str) -> tuple[IMCConfig | None, str | None]:
        """The config of layer ``name`` and the override pattern that set it (None: default)."""
        for pattern, cfg in self.overrides:
            if fnmatch.fnmatchcase(name, pattern):
                return cfg, pattern
        return self.default, None


class LayerFactory:
    """Builds a model's converted layers from one quantization spec.

    Args:
      quant: None, an `IMCConfig` or a `QuantSpec`.
      rngs: the model's `nnx.Rngs`.

    Every method takes the layer's dotted name first; structural facts the
    model knows (``input_signed``: whether the layer's input can be negative)
    are applied to the resolved config.
    """

    def __init__(self, quant, rngs: nnx.Rngs):
        self.spec = QuantSpec.coerce(quant)
        self.rngs = rngs
        self.names: list[str] = []
        self._matched: set[str] = set()

    def config(self, name: str, *, input_signed: bool = True) -> IMCConfig | None:
        """Resolves (and records) the config of layer ``name``."""
        if name in self.names:
            raise ValueError(f"{name}: a layer with this name was already built")
        self.names.append(name)
        if self.spec is None:
            return None
        cfg, pattern = self.spec.resolve(name)
        if pattern is not None:
            self._matched.add(pattern)
        if cfg is not None and cfg.input_signed != input_signed:
            try:
                cfg = dataclasses.replace(cfg, input_signed=input_signed)
            except ValueError as e:
                raise ValueError(f"{name}: {e} (this layer's inputs can be negative)") from None
        return cfg

    def dense(self, name: str, in_features: int, out_features: int, *, activation: str = "identity",
              input_signed: bool = True, **kw) -> IMCDense:
        """An `IMCDense` named ``name`` (keywords as in `IMCDense`)."""
        return IMCDense(in_features, out_features, quant=self.config(name, input_signed=input_signed),
                        activation=activation, rngs=self.rngs, **kw)

    def conv(self, name: str, in_features: int, out_features: int, kernel_size, *, activation: str = "relu",
             input_signed: bool = True, **kw) -> IMCConv:
        """An `IMCConv` named ``name`` (keywords as in `IMCConv`)."""
        return IMCConv(in_features, out_features, tuple(kernel_size), quant=self.config(name, input_signed=input_signed),
                       activation=activation, rngs=self.rngs, **kw)

    def matmul(self, name: str, *, activation: str = "identity", input_signed: bool = True, **kw) -> IMCMatmul:
        """An `IMCMatmul` named ``name`` (attention products)."""
        return IMCMatmul(quant=self.config(name, input_signed=input_signed), activation=activation, rngs=self.rngs, **kw)

    def finish(self, model: nnx.Module) -> nnx.Module:
        """Checks the built model against the spec; returns it.

        Raises:
          ValueError: if an override pattern matched no layer (listing the
            layer names), or a layer's given name is not its attribute path.
        """
        if self.spec is not None:
            unused = [p for p, _ in self.spec.overrides if p not in self._matched]
            if unused:
                raise ValueError(
                    f"quant: override pattern(s) {unused} match no layer; the converted layers are {self.names}"
                )
        actual = list(imc_layers(model))
        if sorted(actual) != sorted(self.names):
            missing = sorted(set(self.names) - set(actual))
            extra = sorted(set(actual) - set(self.names))
            raise ValueError(f"model: layer names given to the factory {missing} are not attribute paths {extra}")
        return model
