"""Errors a user can cause with the data files they hand to the guard."""


class InputError(Exception):
    """A data file (VRPs, AS relationships, prefixes.yml, a feed file) is unusable; the
    message names the file, the place in it and the fix."""
