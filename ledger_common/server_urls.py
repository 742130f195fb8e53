"""What a process says of a server URL (a database's, Redis's) that its client library could not read: the setting's
name, never the URL's text nor a piece of it.

A password with a character left unencoded ('#', '/', '?', '@') is cut by the URL parsers into what they then take for
a port, a path or a query, and their errors quote that piece (asyncpg's "invalid literal for int() with base 10:
'<the password's head>'", "bad query field: '<its tail>@host...'"; redis-py's "Port could not be cast to integer
value as '<its head>'"); a log line or an error that repeats them hands out the password."""

from __future__ import annotations

from contextlib import contextmanager

HINT = "percent-encode any of : / ? # [ ] @ % in its user name and password"


class InvalidServerUrl(ValueError):
    """A server URL its client refused as malformed (the message names the setting, never the URL)."""


@contextmanager
def url_refusals_redacted(setting: str):
    """Around a client's reading of a URL (asyncpg's connect or create_pool, redis-py's from_url): a ValueError it
    raises (asyncpg's ClientConfigurationError is one) becomes InvalidServerUrl, with no chained cause (a traceback
    would print the original message)."""
    try:
        yield
    except InvalidServerUrl:
        raise
    except ValueError as exc:
        raise InvalidServerUrl(f"{setting} is not a valid URL ({type(exc).__name__}; {HINT})") from None
