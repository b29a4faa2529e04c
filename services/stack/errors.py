"""The one exception the stack raises; its message says what to do."""

from services.common.errors import FraudError


class StackError(FraudError, RuntimeError):
    """A service could not be installed, started or reached.

    The message names the service and the next step (a port to free, a package to install,
    the last lines of the service's log). Retrying without that step does not help.
    """
