"""`dlc.nn.functional`: functional forms under torch.nn.functional's names."""
from frontend.functional import *  # noqa: F401,F403
from frontend.functional import __all__  # noqa: F401
