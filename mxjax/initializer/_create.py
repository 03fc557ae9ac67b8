"""The initializer registry and MXNet's ``create`` (names, JSON dumps, dicts)."""

from __future__ import annotations

import json
from typing import Any

from .._registry import Registry
from .._validate import instance
from ._base import Initializer
from ._bilinear import Bilinear
from ._constant import Constant, One, Zero
from ._orthogonal import Orthogonal
from ._random import Normal, Uniform
from ._rnn import FusedRNN, LSTMBias
from ._xavier import MSRAPrelu, Xavier

registry: Registry[Any] = Registry(
    "initializer",
    {
        "bilinear": Bilinear,
        "constant": Constant,
        "fusedrnn": FusedRNN,
        "lstmbias": LSTMBias,
        "msraprelu": MSRAPrelu,
        "normal": Normal,
        "one": One,
        "ones": One,
        "orthogonal": Orthogonal,
        "uniform": Uniform,
        "xavier": Xavier,
        "zero": Zero,
        "zeros": Zero,
    },
)


def create(init: Initializer | str | dict[str, Any], /, **kwargs: Any) -> Initializer:
    """MXNet's ``mx.init.create``.

    ``init`` may be an Initializer (returned as is; no kwargs allowed), a registry name
    (case-insensitive, called with ``kwargs``), a ``dumps()`` string
    ``'["xavier", {"magnitude": 2}]'``, a JSON object ``'{"initializer": "xavier", ...}'``
    or such a dict.

    Raises:
      TypeError: ``init`` is not an Initializer, a str or a dict.
      ValueError: unknown name, malformed JSON, or kwargs given with an instance or JSON.
    """
    if isinstance(init, Initializer):
        if kwargs:
            raise ValueError(
                f"{init!r} is already an instance; extra arguments {kwargs} are invalid"
            )
        return init
    if isinstance(init, dict):
        kw = dict(init)
        if "initializer" not in kw:
            raise ValueError(
                f"an initializer dict needs an 'initializer' key, got {init!r}"
            )
        return create(kw.pop("initializer"), **kw, **kwargs)
    instance("initializer", init, str, "an Initializer, a str or a dict")
    if init.startswith(("[", "{")):
        if kwargs:
            raise ValueError(
                "extra arguments are invalid with a JSON initializer string"
            )
        try:
            spec = json.loads(init)
        except json.JSONDecodeError as e:
            raise ValueError(f"malformed initializer JSON {init!r}: {e}") from None
        if isinstance(spec, dict):
            return create(spec)
        if not (
            isinstance(spec, list) and len(spec) == 2 and isinstance(spec[1], dict)
        ):
            raise ValueError(
                f"initializer JSON must be [name, {{kwargs}}], got {init!r}"
            )
        return create(spec[0], **spec[1])
    return registry.create(init, **kwargs)


register = registry.register
