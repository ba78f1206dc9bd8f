"""`python -m jaxgen.train`: the command's entry point (its code: jaxgen/cli/train.py), and
`jaxgen.train(config, workdir)`, the Python API's training call."""

import sys
import types

from jaxgen.cli.common import main_guard
from jaxgen.cli.train import main
from jaxgen.engine import api


class _CallableModule(types.ModuleType):
    """`jaxgen.train` is this module (python -m jaxgen.train) and the API's training call: once
    the module is imported, the package attribute is the module, so calling it trains."""

    def __call__(self, *args, **kwargs) -> api.Model:
        return api.train(*args, **kwargs)


_CallableModule.__call__.__doc__ = api.train.__doc__
sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main_guard(main)
