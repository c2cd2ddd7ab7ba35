"""The MQTT connection's TLS files, loaded as the connection will use them.

`check-config` calls `mqtt_tls_context`, and the service can hand its context to paho
(`tls_set_context`), so a garbage CA, a garbage client certificate or a key that does not match
it is named with its key, file and fix before anything connects, never met as an `ssl.SSLError`
on the MQTT thread.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pi_monitor.config import ConfigError, MqttSettings, check_small_file

# A PEM certificate chain or key is a few kB; far more is not one (and /dev/zero is refused).
TLS_FILE_MAX_BYTES = 1 << 20
PEM_CERT = "'-----BEGIN CERTIFICATE-----'"
PEM_KEY = "'-----BEGIN PRIVATE KEY-----' or similar"
# OpenSSL's reasons for a key that belongs to another certificate (same or other key type).
KEY_MISMATCH = ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED")


class _PassphraseAsked(Exception):
    """OpenSSL asked for a key's pass phrase, which the config has no key for."""


def mqtt_tls_context(m: MqttSettings) -> ssl.SSLContext | None:
    """The client context for `m` (None without TLS): the broker checked against `ca_file` (or
    the system CAs) and our certificate and key loaded; ConfigError names what is wrong."""
    if not m.tls:
        return None
    for key in ("ca_file", "cert_file", "key_file"):
        if getattr(m, key):
            check_small_file(Path(getattr(m, key)), _label(m, key), "PEM file", TLS_FILE_MAX_BYTES)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # as paho's tls_set: verify the broker
    if m.ca_file:
        _load_ca(context, m)
    else:
        context.load_default_certs()
    if m.cert_file:
        _check_holds_certificate(m)
        _load_cert_and_key(context, m)
    return context


def _load_ca(context: ssl.SSLContext, m: MqttSettings) -> None:
    try:
        context.load_verify_locations(cafile=m.ca_file)
    except ssl.SSLError as e:
        raise ConfigError(
            f"{_label(m, 'ca_file')}: no CA certificate in it ({_reason(e)}); give the PEM "
            f"certificate ({PEM_CERT}) of the authority that signed the broker's"
        ) from None


def _check_holds_certificate(m: MqttSettings) -> None:
    """Tell a bad certificate from a bad key: `load_cert_chain` says 'PEM lib' for both."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=m.cert_file)
    except ssl.SSLError as e:
        raise ConfigError(
            f"{_label(m, 'cert_file')}: no certificate in it ({_reason(e)}); give this "
            f"monitor's client certificate in PEM ({PEM_CERT})"
        ) from None


def _load_cert_and_key(context: ssl.SSLContext, m: MqttSettings) -> None:
    key = "key_file" if m.key_file else "cert_file"  # without key_file, the key is in cert_file
    try:
        context.load_cert_chain(m.cert_file, m.key_file or None, password=_refuse_passphrase)
    except _PassphraseAsked:
        raise ConfigError(
            f"{_label(m, key)}: the private key is protected by a pass phrase, which pi-monitor "
            f"cannot give; store it without one: openssl pkey -in {getattr(m, key)} -out KEY.pem"
        ) from None
    except ssl.SSLError as e:
        if e.reason in KEY_MISMATCH:
            raise ConfigError(
                f"{_label(m, key)}: the private key does not belong to the certificate in "
                f"{_label(m, 'cert_file')} ({_reason(e)}); give the key it was issued for"
            ) from None
        raise ConfigError(
            f"{_label(m, key)}: no private key in it ({_reason(e)}); give the client "
            f"certificate's key in PEM ({PEM_KEY})"
            + ("" if m.key_file else ", in mqtt.key_file or appended to mqtt.cert_file")
        ) from None


def _refuse_passphrase() -> bytes:
    raise _PassphraseAsked


def _label(m: MqttSettings, key: str) -> str:
    return f"'mqtt.{key}' = {getattr(m, key)!r}"


def _reason(e: ssl.SSLError) -> str:
    """OpenSSL's reason in words ('key values mismatch'); 'PEM lib' errors carry none."""
    return f"OpenSSL: {e.reason.replace('_', ' ').lower() if e.reason else 'PEM lib'}"
