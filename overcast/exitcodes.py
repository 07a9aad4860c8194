"""Exit codes every `overcast` subcommand keeps, so scripts can rely on them."""

OK = 0
FAILURE = 1  # the command ran but the network/daemon operation failed
USAGE = 2  # bad arguments or an invalid config file: fix the input and retry
ALERT = 3  # the command worked and found something the operator must act on
