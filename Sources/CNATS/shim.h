#ifndef CNATS_SHIM_H
#define CNATS_SHIM_H
/* NATS.c (Debian's libnats-dev) as a Swift system library. Everything the Swift layer
 * (Sources/NATS) uses is a function or a struct, so no shim code is needed. */
#include <nats/nats.h>
#endif
