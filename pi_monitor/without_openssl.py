"""The live service without OpenSSL when its MQTT connection has no TLS.

paho imports `ssl` and `hashlib` even for a plain connection, which maps libssl and libcrypto
into the service: about 5 MB of memory for nothing (4.9 MB of peak RSS measured here). Python
supports builds without OpenSSL (`ssl` absent, `hashlib` on its own implementations), and
`keep_out` makes this process one, chosen once at start-up before paho is imported.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

OPENSSL_MODULES = ("ssl", "_ssl", "_hashlib")


def keep_out() -> bool:
    """Make `import ssl` fail (and `hashlib` use its own code) from now on in this process;
    False, changing nothing, when one of them is already imported."""
    if any(sys.modules.get(name) is not None for name in OPENSSL_MODULES):
        return False
    for name in OPENSSL_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # Python's "module absent" marker
    return True


class _NeverRaised(Exception):
    """Only a TLS socket raises ssl's "try again" errors; without OpenSSL there is none."""


# paho 2.x names `ssl.SSLWantReadError` and `ssl.SSLWantWriteError` in the `except` clauses of
# every socket read and write, TLS or not, so with `ssl` absent the first read that would block
# raises AttributeError. Given as paho's `ssl`, this matches what those clauses look up.
PAHO_SSL_STAND_IN = SimpleNamespace(SSLWantReadError=_NeverRaised, SSLWantWriteError=_NeverRaised)
