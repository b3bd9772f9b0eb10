"""The agent client's earlier import path, kept so code written against it keeps working.

The client is ``signoff_client`` (the light ``signoff-client`` distribution under
``client/``); ``approvals.client`` names the same objects.
"""

from signoff_client import *  # noqa: F403
from signoff_client import __all__ as __all__
