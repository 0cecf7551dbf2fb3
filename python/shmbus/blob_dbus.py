"""The ``DBusException`` subclasses a dbus-python service raises for a blob argument it
refuses (docs/BLOBS.md, "Errors"). dbus-python replies a raised ``DBusException`` with
its ``_dbus_error_name`` and message; any other exception would go back as
``org.freedesktop.DBus.Python.*`` with a traceback for a message. This module needs
dbus-python; :mod:`shmbus.blob` imports it only when a service refuses a blob.
"""
import dbus

from .blob_checks import INVALID_ARGS, INVALID_BLOB


class InvalidBlobException(dbus.DBusException):
    """``org.shmbus.Error.InvalidBlob``, its message "reason: what" (the refusal's
    ``str()``); ``reason`` and ``refusal`` (the :class:`~shmbus.blob.InvalidBlob`)."""

    _dbus_error_name = INVALID_BLOB
    include_traceback = False

    def __init__(self, refusal):
        super().__init__(str(refusal))
        self.reason = refusal.reason
        self.refusal = refusal


class InvalidArgsException(dbus.DBusException):
    """``org.freedesktop.DBus.Error.InvalidArgs``: the argument is not a blob at all
    (another D-Bus type), the error Swift's generated services reply for it."""

    _dbus_error_name = INVALID_ARGS
    include_traceback = False
