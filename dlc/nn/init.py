"""`dlc.nn.init`: parameter initializers (Xavier/Glorot, He/Kaiming, ...)."""
from frontend.init import *  # noqa: F401,F403
from frontend.init import __all__  # noqa: F401
