"""`dlc.nn`: the layer DSL (defined in the `frontend` package)."""
from frontend.nn import *  # noqa: F401,F403
from frontend.nn import __all__  # noqa: F401
from dlc.nn import functional, init  # noqa: F401,E402
