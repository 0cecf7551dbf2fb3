/* shmbus-follow: a ShmBus subscriber in plain C with GLib's GDBus, written from
 * docs/FORMAT.md and docs/PROTOCOL.md alone (no ShmBus library).
 *
 * It finds the channel in the registry (ListChannels), maps its current segment
 * read-only (OpenSegment, a sealed memfd), validates the header and every record, and
 * prints one line per event:
 *     chunk SEQUENCE KEY LENGTH MIX64      (KEY "-" when empty; MIX64 of the payload, seed 0, hex)
 *     gap MISSED after SEQUENCE
 * It wakes on the owner's Committed signals (setting the doorbell's "awaiting signal"
 * flag, so the publisher sends them at once) and looks every 100 ms besides, follows
 * retired segments to their successors and a channel that a new publisher continued.
 *
 *     shmbus-follow [--address ADDRESS] [--from oldest|now] [--count N] [--until SEQUENCE] [--once] CHANNEL
 *
 * --count ends after N chunks, --until once SEQUENCE was delivered or passed (a gap or an
 * obsolete chunk included); --once reads what the current segment holds and exits. Exit status: 0 done, 1 usage or
 * bus failure, 2 a segment failed validation (the line "invalid: ..." says what and where).
 * Build: cc -O2 -Wall -o shmbus-follow shmbus-follow.c $(pkg-config --cflags --libs gio-2.0 gio-unix-2.0)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define REGISTRY "org.shmbus.Registry1"
#define HEADER 4096u
#define RECORD_HEADER 64u

typedef struct {
    uint8_t *base;  /* PROT_READ mapping of the whole file */
    uint64_t size;     /* of the mapping */
    uint64_t capacity; /* the header's: records end at or before it */
    char name[33];  /* the segment ID in hex */
    uint8_t *doorbell; /* read-write mapping of the doorbell page, or NULL */
} Segment;

typedef struct {
    GDBusConnection *bus;
    GMainLoop *loop;
    const char *channel;
    Segment seg;
    uint64_t position; /* next record's offset */
    uint64_t last;     /* L of FORMAT.md "Gaps": the last sequence delivered or skipped */
    gboolean have_last;
    long count, delivered;
    uint64_t until; /* 0: none */
    gboolean once;
    guint committed_watch;
    int status;
} Follower;

static uint64_t mix64(const uint8_t *p, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = 0;
        memcpy(&w, p + i, n - i < 8 ? n - i : 8); /* little-endian hosts */
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    return h;
}

static uint64_t u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t load_acquire(const uint8_t *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE); }

static int invalid(Follower *f, const char *what, uint64_t offset) {
    printf("invalid: segment %s: %s (offset %llu)\n", f->seg.name, what, (unsigned long long)offset);
    fflush(stdout);
    f->status = 2;
    if (f->loop) g_main_loop_quit(f->loop);
    return -1;
}

/* FORMAT.md "Validation": the descriptor and the header, each field read once. */
static int map_segment(Follower *f, int fd, const char *name) {
    Segment s = {0};
    g_strlcpy(s.name, name, sizeof s.name);
    g_strlcpy(f->seg.name, name, sizeof f->seg.name); /* for the messages below */
    char link[64], target[256] = "";
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 8 || strncmp(target, "/memfd:", 7) != 0) return invalid(f, "not a memfd", 0);
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & 0x17) != 0x17) return invalid(f, "not sealed (0x17 required)", 0);
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 8192) return invalid(f, "smaller than 8192 bytes", 0);
    s.size = (uint64_t)st.st_size;
    s.base = mmap(NULL, s.size, PROT_READ, MAP_SHARED, fd, 0);
    if (s.base == MAP_FAILED) return invalid(f, "mmap failed", 0);
    const uint8_t *h = s.base;
    uint64_t capacity = u64(h + 16);
    uint16_t channel_length; memcpy(&channel_length, h + 68, 2);
    static const uint8_t zero[16];
    const char *problem = NULL;
    if (u64(h) != 0x31475355424D4853ull) problem = "bad magic";
    else if (u32(h + 8) != 1) problem = "format version is not 1";
    else if (u32(h + 12) != HEADER) problem = "header_size is not 4096";
    else if (mix64(h, 272, 0x53484D4255534844ull) != u64(h + 272)) problem = "header checksum mismatch";
    else if (capacity % 4096 || capacity < 8192 || capacity > s.size) problem = "bad capacity";
    else if (channel_length != strlen(f->channel) || memcmp(h + 72, f->channel, channel_length)) problem = "another channel";
    else if (!memcmp(h + 24, zero, 16)) problem = "zero ID";
    if (problem) { munmap(s.base, s.size); return invalid(f, problem, 0); }
    s.capacity = capacity;
    if (f->seg.base) munmap(f->seg.base, f->seg.size); /* views of it were only printed */
    s.doorbell = f->seg.doorbell;
    f->seg = s;
    f->position = HEADER;
    return 0;
}

/* Registry1.OpenSegment: the segment's descriptor, and the doorbell's when handed out. */
static int open_segment(Follower *f, const char *name) {
    GUnixFDList *fds = NULL;
    GError *error = NULL;
    GVariant *reply = g_dbus_connection_call_with_unix_fd_list_sync(
        f->bus, REGISTRY, "/org/shmbus/Registry1", REGISTRY, "OpenSegment", g_variant_new("(s)", name),
        G_VARIANT_TYPE("(ha{sv})"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL, &fds, NULL, &error);
    if (!reply) { fprintf(stderr, "OpenSegment %s: %s\n", name, error->message); g_error_free(error); return -1; }
    gint32 handle, bell = -1;
    GVariant *info;
    g_variant_get(reply, "(h@a{sv})", &handle, &info);
    g_variant_lookup(info, "doorbell", "h", &bell);
    int fd = fds ? g_unix_fd_list_get(fds, handle, NULL) : -1;
    int result = fd < 0 ? -1 : map_segment(f, fd, name);
    if (result == 0 && bell >= 0 && !f->seg.doorbell) {
        int bfd = g_unix_fd_list_get(fds, bell, NULL);
        void *page = bfd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, bfd, 0);
        if (page != MAP_FAILED) f->seg.doorbell = page; /* only a hint; nobody trusts it */
        if (bfd >= 0) close(bfd);
    }
    if (fd >= 0) close(fd); /* the mapping stays */
    g_variant_unref(info);
    g_variant_unref(reply);
    if (fds) g_object_unref(fds);
    return result;
}

/* FORMAT.md "Validation", one record: fields copied once, then checked. */
static int read_record(Follower *f, uint64_t end) {
    uint64_t off = f->position;
    uint8_t r[RECORD_HEADER];
    if (off % 64 || off + RECORD_HEADER > end) return invalid(f, "record header past the committed end", off);
    memcpy(r, f->seg.base + off, RECORD_HEADER);
    uint64_t length = u64(r + 8), sequence = u64(r + 16), expiry = u64(r + 32), payload_length = u64(r + 40);
    uint32_t payload_offset = u32(r + 48);
    uint16_t key_length; memcpy(&key_length, r + 52, 2);
    if (u32(r) != 0x4B4E4843u) return invalid(f, "bad record magic", off);
    if (length < 64 || length % 64 || length > end - off) return invalid(f, "bad record length", off);
    if (key_length > 255) return invalid(f, "key longer than 255", off);
    if (payload_offset % 64 || payload_offset < 64u + key_length || payload_offset > length ||
        payload_length > length - payload_offset)
        return invalid(f, "payload outside the record", off);
    uint8_t key[256];
    memcpy(key, f->seg.base + off + 64, key_length);
    memset(r + 4, 0, 4); /* flags are not covered */
    if (mix64(key, key_length, mix64(r, 56, 0x53484D4255535243ull)) != u64(r + 56)) return invalid(f, "record checksum mismatch", off);
    key[key_length] = 0;
    if (!g_utf8_validate((const char *)key, key_length, NULL)) return invalid(f, "key is not UTF-8", off);
    f->position = off + length;
    if (f->have_last && sequence <= f->last) return 0; /* a copy made by garbage collection */
    if (f->have_last && sequence > f->last + 1) {
        printf("gap %llu after %llu\n", (unsigned long long)(sequence - f->last - 1), (unsigned long long)f->last);
    }
    f->last = sequence;
    f->have_last = TRUE;
    uint32_t flags = __atomic_load_n((const uint32_t *)(f->seg.base + off + 4), __ATOMIC_ACQUIRE);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    if ((flags & 1) || (expiry != 0 && now_ns >= expiry)) return 0; /* obsolete or expired */
    /* The payload is the live mapping: a hostile writer could change it while we read. */
    printf("chunk %llu %s %llu %016llx\n", (unsigned long long)sequence, key_length ? (char *)key : "-",
           (unsigned long long)payload_length,
           (unsigned long long)mix64(f->seg.base + off + payload_offset, payload_length, 0));
    f->delivered++;
    return 0;
}

static gboolean find_current(Follower *f, char **owner, char **segment);
static gboolean done(const Follower *f) {
    return (f->count > 0 && f->delivered >= f->count) || (f->until && f->have_last && f->last >= f->until);
}
static void watch_owner(Follower *f, const char *owner);

/* Reads everything committed; follows a retired segment, or a channel whose current
 * segment moved (a new publisher continued it). Returns FALSE when done. */
static gboolean drain(Follower *f) {
    for (;;) {
        if (f->status) return FALSE;
        uint32_t state = __atomic_load_n((const uint32_t *)(f->seg.base + 512), __ATOMIC_ACQUIRE);
        uint64_t end = load_acquire(f->seg.base + 384);
        if (end < HEADER || end > f->seg.capacity || end % 64) { invalid(f, "bad committed_end", end); return FALSE; }
        while (f->position < end && !done(f))
            if (read_record(f, end) != 0) return FALSE;
        fflush(stdout);
        if (done(f) || f->once) return FALSE;
        if (f->position < end) continue;
        char next[33] = "";
        if (state & 1) {
            static const uint8_t zero[16];
            const uint8_t *id = f->seg.base + 520;
            if (!memcmp(id, zero, 16) || !memcmp(id, f->seg.base + 24, 16)) { invalid(f, "bad successor", 520); return FALSE; }
            for (int i = 0; i < 16; i++) snprintf(next + 2 * i, 3, "%02x", id[i]);
        } else {
            char *owner = NULL, *current = NULL;
            if (find_current(f, &owner, &current) && strcmp(current, f->seg.name) != 0) {
                g_strlcpy(next, current, sizeof next);
                watch_owner(f, owner);
            }
            g_free(owner);
            g_free(current);
        }
        if (next[0] && open_segment(f, next) == 0) continue;
        if (f->status) return FALSE;
        if (f->seg.doorbell) { /* FORMAT.md "Doorbell": we wait for Committed; say so */
            __atomic_store_n((uint32_t *)(f->seg.doorbell + 16), 1u, __ATOMIC_RELEASE);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (load_acquire(f->seg.base + 384) != end) continue;
        }
        return TRUE;
    }
}

static void on_wake(Follower *f) {
    if (!drain(f)) g_main_loop_quit(f->loop);
}
static void on_committed(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                         const char *member, GVariant *params, gpointer data) { on_wake(data); }
static gboolean on_tick(gpointer data) { on_wake(data); return G_SOURCE_CONTINUE; }

/* Only the channel's registered owner may announce commits (PROTOCOL.md). */
static void watch_owner(Follower *f, const char *owner) {
    if (f->committed_watch) g_dbus_connection_signal_unsubscribe(f->bus, f->committed_watch);
    f->committed_watch = g_dbus_connection_signal_subscribe(
        f->bus, owner[0] ? owner : NULL, "org.shmbus.Publisher1", "Committed", "/org/shmbus/Publisher1", f->channel,
        G_DBUS_SIGNAL_FLAGS_NONE, on_committed, f, NULL);
}

/* Registry1.ListChannels() → a(sssttt): name, owner, current segment, … */
static gboolean find_current(Follower *f, char **owner, char **segment) {
    GError *error = NULL;
    GVariant *reply = g_dbus_connection_call_sync(f->bus, REGISTRY, "/org/shmbus/Registry1", REGISTRY, "ListChannels", NULL,
                                                  G_VARIANT_TYPE("(a(sssttt))"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL, &error);
    if (!reply) { g_error_free(error); return FALSE; }
    GVariantIter *iter;
    const char *name, *o, *s;
    guint64 generation, segments, bytes;
    gboolean found = FALSE;
    g_variant_get(reply, "(a(sssttt))", &iter);
    while (!found && g_variant_iter_next(iter, "(&s&s&sttt)", &name, &o, &s, &generation, &segments, &bytes)) {
        if (strcmp(name, f->channel) == 0) { *owner = g_strdup(o); *segment = g_strdup(s); found = TRUE; }
    }
    g_variant_iter_free(iter);
    g_variant_unref(reply);
    return found;
}

int main(int argc, char **argv) {
    Follower f = {0};
    const char *address = NULL, *from = "now";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--address") && i + 1 < argc) address = argv[++i];
        else if (!strcmp(argv[i], "--from") && i + 1 < argc) from = argv[++i];
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) f.count = atol(argv[++i]);
        else if (!strcmp(argv[i], "--until") && i + 1 < argc) f.until = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--once")) f.once = TRUE;
        else if (argv[i][0] != '-' && !f.channel) f.channel = argv[i];
        else { fprintf(stderr, "usage: %s [--address ADDRESS] [--from oldest|now] [--count N] [--until SEQ] [--once] CHANNEL\n", argv[0]); return 1; }
    }
    if (!f.channel || (strcmp(from, "now") && strcmp(from, "oldest"))) { fprintf(stderr, "usage: see the top of shmbus-follow.c\n"); return 1; }
    GError *error = NULL;
    f.bus = address ? g_dbus_connection_new_for_address_sync(
                          address, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                          NULL, NULL, &error)
                    : g_bus_get_sync(G_BUS_TYPE_SESSION, NULL, &error);
    if (!f.bus) { fprintf(stderr, "cannot connect: %s\n", error->message); return 1; }
    char *owner = NULL, *segment = NULL;
    for (int tries = 0; !find_current(&f, &owner, &segment); tries++) { /* the channel may come later */
        if (tries == 100) { fprintf(stderr, "no channel %s\n", f.channel); return 1; }
        g_usleep(100000);
    }
    watch_owner(&f, owner); /* before the first read, so no commit after it goes unheard */
    if (open_segment(&f, segment) != 0) return f.status ? f.status : 1;
    g_free(owner);
    g_free(segment);
    if (!strcmp(from, "now")) { /* FORMAT.md "Gaps": L = last_sequence at the current committed_end */
        f.position = load_acquire(f.seg.base + 384);
        f.last = load_acquire(f.seg.base + 392);
        f.have_last = TRUE;
        if (f.position < HEADER || f.position > f.seg.capacity || f.position % 64) return invalid(&f, "bad committed_end", 384), 2;
    }
    f.loop = g_main_loop_new(NULL, FALSE);
    if (drain(&f)) {
        g_timeout_add(100, on_tick, &f); /* a lost signal delays, never stalls */
        g_main_loop_run(f.loop);
    }
    fflush(stdout);
    return f.status;
}
