#ifndef CDBUS_SHIM_H
#define CDBUS_SHIM_H
/* libdbus as a Swift system library. The DBUS_TYPE_* and DBUS_MESSAGE_TYPE_*
 * macros are character constants that do not import into Swift; the DBus
 * module defines its own codes (see DBusTypeCode.swift). */
#include <dbus/dbus.h>
#endif
