"""MXNet's NDArray ``.params`` file format (``mx.nd.save`` / ``mx.nd.load``), numpy only.

>>> from mxjax import nd
>>> nd.save("/tmp/x.params", {"arg:fc_weight": np.ones((2, 3), np.float32)})  # doctest: +SKIP
>>> nd.load("/tmp/x.params")["arg:fc_weight"].shape  # doctest: +SKIP
(2, 3)
"""

from ._format import MXNetFileError as MXNetFileError
from ._load import load as load
from ._load import load_frombuffer as load_frombuffer
from ._save import save as save
from ._save import save_tobuffer as save_tobuffer

__all__ = ["MXNetFileError", "load", "load_frombuffer", "save", "save_tobuffer"]
