"""The one exception family the CLI and services turn into user-facing messages."""


class ApkfarmError(Exception):
    """A refusal or failure whose message is meant for a person.

    The message must say what went wrong and where (file, package, phase), so
    that the CLI can print it as-is and a service can put it into an event.
    """
