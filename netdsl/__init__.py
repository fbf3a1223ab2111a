"""netdsl: describe, compile and train AlexNet-family convolutional networks."""
__version__ = "0.1.0"

from .compiler import Network, load  # noqa: E402
from .errors import NetDslError  # noqa: E402

__all__ = ["Network", "NetDslError", "load"]
