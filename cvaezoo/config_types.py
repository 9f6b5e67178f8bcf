"""The types of config values, checked before anything is built or written.

A value of the wrong type (``seed=abc``, ``data.batch_size=abc``, ``net.hidden=[64,x]``) is a UserError naming
the key and what it must be, instead of a traceback from deep inside the class it was meant for. What each
key must be comes from one place, the annotations of that class's ``__init__`` (the node's ``_target_``), so
a new model or data module is checked without a list to keep up to date. An annotation this module does not
understand (a Lightning class, a path) lets the value through: the class then checks it itself.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from cvaezoo.arguments import SEED_MAX
from cvaezoo.errors import UserError
from cvaezoo.nets import NetConfig

_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_UNKNOWN = object()  # a parameter without an annotation this module can read


def check_config(cfg: DictConfig) -> None:
    """Every value of a training config of the wrong type: the run's own keys, then each node that is built."""
    seed = _value(cfg, "seed") if "seed" in cfg else 0
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= SEED_MAX):
        raise UserError(f"seed must be an integer in [0, {SEED_MAX}], got {seed!r}")
    for key, hint, wanted in (("skip_if_done", bool, "true or false"),
                              ("ckpt_path", str | None, "'last', the path of a .ckpt file, or null")):
        if key in cfg and fits(_value(cfg, key), hint) is False:
            raise UserError(f"{key} must be {wanted}, got {_value(cfg, key)!r}")
    samples = _value(cfg, "n_samples_per_class") if "n_samples_per_class" in cfg else 0
    if not (isinstance(samples, int) and not isinstance(samples, bool) and samples >= 0):
        raise UserError(f"n_samples_per_class must be an integer >= 0, got {samples!r}")
    for key in ("data", "model", "trainer", "logger"):
        if isinstance(cfg.get(key), DictConfig):
            check_node(cfg[key], key)
    for name, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig):  # a checkpoint callback's monitor and mode: null are the model's choice
            check_node(node, f"callbacks.{name}", nullable=("monitor", "mode"))
    if isinstance(cfg.get("net"), DictConfig):  # handed to every model as a dict, read by NetConfig
        check_values(cfg.net, typing.get_type_hints(NetConfig), "net",
                     only=[field.name for field in dataclasses.fields(NetConfig)])


def check_node(node: DictConfig, key: str, nullable: tuple[str, ...] = ()) -> None:
    """The values of a node with a ``_target_`` against the annotations of what it builds (nested nodes too);
    ``nullable`` keys may be null whatever their annotation (the caller fills them in)."""
    target = node.get("_target_")
    hints = parameter_hints(target) if isinstance(target, str) else {}
    check_values(node, {k: v for k, v in hints.items() if k not in nullable}, key)
    for name in nullable:
        if name in hints and name in node and node[name] is not None:
            check_values(node, {name: hints[name]}, key, only=[name])


def check_values(node: DictConfig, hints: Mapping[str, Any], key: str, only: list[str] | None = None) -> None:
    """Each value of ``node`` (or of its keys ``only``) against its annotation in ``hints``."""
    for name in node:
        if not isinstance(name, str) or name.startswith("_") or (only is not None and name not in only):
            continue
        try:
            child = node._get_node(name)
            value = _value(node, name)
        except Exception:  # an interpolation that resolves only later (hydra:...) is left to the builder
            continue
        if isinstance(child, DictConfig) and "_target_" in child:
            check_node(child, f"{key}.{name}")
            continue
        hint = hints.get(name, _UNKNOWN)
        if hint is not _UNKNOWN and fits(value, hint) is False:
            raise UserError(f"{key}.{name} must be {describe(hint)}, got {value!r}")


@functools.lru_cache(maxsize=None)
def parameter_hints(target: str) -> dict[str, Any]:
    """The annotated parameters of ``target`` (a class: its ``__init__`` and, through ``**kwargs``, its bases');
    read once per target (reading annotations is most of a check's cost); callers must not change the dict."""
    from hydra.utils import get_object

    try:
        built = get_object(target)
    except Exception:  # a misspelt target: instantiate names it
        return {}
    functions = [vars(c)["__init__"] for c in built.__mro__ if "__init__" in vars(c)] if inspect.isclass(built) \
        else [built]
    hints: dict[str, Any] = {}
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            break
        try:
            annotations = typing.get_type_hints(function)
        except Exception:  # a name only imported for type checkers
            annotations = {}
        for name, parameter in parameters.items():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY) and name != "self":
                hints.setdefault(name, annotations.get(name, _UNKNOWN))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            break  # the rest of the bases' parameters cannot be reached from the config
    return {name: hint for name, hint in hints.items() if hint is not _UNKNOWN}


def fits(value: Any, hint: Any) -> bool | None:
    """Whether a config value fits an annotation: True, False, or None where the annotation is not understood."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin is typing.Union or origin is types.UnionType:
        results = [fits(value, arg) for arg in args]
        return True if True in results else (None if None in results else False)
    if hint is None or hint is type(None):
        return value is None
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if (origin or hint) in _SEQUENCES:
        element = args[0] if args and not (origin is tuple and len(args) != 2) else Any
        if not isinstance(value, (list, tuple)):
            return None if isinstance(value, str) and element is str else False  # "a" may stand for ["a"]
        results = [fits(item, element) for item in value]
        return False if False in results else (None if None in results else True)
    if (origin or hint) in _MAPPINGS:
        return isinstance(value, dict)
    if inspect.isclass(hint) and isinstance(value, hint):
        return True
    return None


def describe(hint: Any) -> str:
    """An annotation in words: "an integer or null", "a list of integers"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        literals = [arg for arg in args if typing.get_origin(arg) is typing.Literal]
        choices = [choice for arg in literals for choice in typing.get_args(arg)]
        others = [arg for arg in args if arg is not type(None) and typing.get_origin(arg) is not typing.Literal]
        words = list(dict.fromkeys(describe(arg) for arg in others))
        if choices:
            words.append(describe(typing.Literal[tuple(choices)]))
        return " or ".join(words + (["null"] if type(None) in args else []))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if (origin or hint) in _SEQUENCES:
        element = args[0] if args else Any
        return f"a list of {_PLURALS.get(element, 'values')}"
    if (origin or hint) in _MAPPINGS:
        return "a mapping"
    return _WORDS.get(hint) or (f"a {hint.__name__}" if inspect.isclass(hint) else str(hint))


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
_PLURALS = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _value(node: DictConfig, key: str) -> Any:
    """A value as the built class will see it: resolved, lists and mappings as plain Python."""
    value = node[key]
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value
