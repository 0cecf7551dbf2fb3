#!/usr/bin/env bash
# Inspect the ShmBus registry with D-Bus tools only: busctl and gdbus, nothing of ours.
# Needs a running registry (`shmbus daemon`, or activation after `shmbus install-service`).
# Pass a bus address as $1, or it uses the session bus.
set -euo pipefail
if [ $# -ge 1 ]; then BUSCTL=(busctl "--address=$1"); GDBUS=(--address "$1"); else BUSCTL=(busctl --user); GDBUS=(--session); fi
NAME=org.shmbus.Registry1 OBJ=/org/shmbus/Registry1

echo "== Who owns the registry name?"
"${BUSCTL[@]}" status "$NAME" 2>/dev/null | grep -E '^(PID|Comm|UniqueName)=' || echo "(not running)"

echo; echo "== The object tree: one object per channel and per segment"
"${BUSCTL[@]}" tree "$NAME"

echo; echo "== Channels: name, owner, current segment, generation, segments, bytes"
"${BUSCTL[@]}" call "$NAME" "$OBJ" org.shmbus.Registry1 ListChannels

echo; echo "== Segments of every channel"
"${BUSCTL[@]}" call "$NAME" "$OBJ" org.shmbus.Registry1 ListSegments s ""

echo; echo "== Registry properties"
for p in Version ChannelCount SegmentCount TotalBytes MaxSegmentsPerConnection MaxBytesPerConnection; do
    printf '%-26s ' "$p"; "${BUSCTL[@]}" get-property "$NAME" "$OBJ" org.shmbus.Registry1 "$p"
done

echo; echo "== Everything at once, through the ObjectManager (gdbus)"
gdbus call "${GDBUS[@]}" --dest "$NAME" --object-path "$OBJ" --method org.freedesktop.DBus.ObjectManager.GetManagedObjects

echo; echo "== The interfaces, as the daemon serves them (gdbus introspect)"
gdbus introspect "${GDBUS[@]}" --dest "$NAME" --object-path "$OBJ" --only-properties

echo; echo "== To watch changes live:"
echo "   gdbus monitor ${GDBUS[*]} --dest $NAME"
echo "   busctl ${BUSCTL[*]:1} monitor $NAME"
