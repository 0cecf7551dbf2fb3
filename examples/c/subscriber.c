/* A ShmBus subscriber in plain C with GLib/GDBus, written from docs/FORMAT.md and
 * docs/PROTOCOL.md alone: no ShmBus library. It finds the channel's current segment in
 * the registry, maps it read-only (OpenSegment passes the memfd), validates the header
 * and every record, and prints each chunk as examples/python/subscriber.py does:
 *
 *   sequence N key K length L sha256 H      (the payload hashed in place, never copied)
 *   gap: missed N chunks after sequence S
 *   publisher :1.23 left
 *
 * It follows garbage collection (a retired segment, then its successor) and wakes on
 * the owner's Committed signals, after setting the doorbell's awaiting-signal flag.
 *
 *   cc -O2 -o shmbus-subscribe subscriber.c $(pkg-config --cflags --libs gio-2.0 gio-unix-2.0)
 *   ./shmbus-subscribe CHANNEL [--bus ADDRESS] [--from oldest|now|N] [--count N] [--until-publisher-leaves]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEADER_SIZE 4096u
#define REQUIRED_SEALS 0x17            /* SEAL | SHRINK | GROW | FUTURE_WRITE */
#define DOORBELL_SEALS 0x07
#define REGISTRY "org.shmbus.Registry1"
#define REGISTRY_PATH "/org/shmbus/Registry1"

typedef struct {
    const uint8_t *base;               /* PROT_READ mapping */
    uint64_t size, capacity, generation, base_sequence;
    char name[33];
} Segment;

static struct {
    GDBusConnection *bus;
    GMainLoop *loop;
    const char *channel;
    Segment seg;
    uint32_t *doorbell;                /* writable mapping of the doorbell, or NULL */
    uint64_t position, limit, last;
    gboolean have_last, until_left, owner_left;
    char owner[256];
    long count, received;
} S;

static uint64_t mix64(const uint8_t *p, size_t n, uint64_t h) {   /* FORMAT.md, "Checksums" */
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = 0;
        memcpy(&w, p + i, n - i < 8 ? n - i : 8);                  /* little-endian host */
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    return h;
}

static uint64_t u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint64_t load64(const uint8_t *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE); }
static uint32_t load32(const uint8_t *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE); }

static void fail(const char *what, const char *detail) {
    fprintf(stderr, "shmbus-subscribe: %s: %s\n", what, detail);
    exit(2);
}

static gboolean channel_name_ok(const uint8_t *name, size_t n) {    /* FORMAT.md, "Channel names" */
    if (n < 1 || n > 200) return FALSE;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || name[i] == '/') {
            if (i == start || (i - start == 2 && name[start] == '.' && name[start + 1] == '.')) return FALSE;
            start = i + 1;
        } else if (!g_ascii_isalnum(name[i]) && name[i] != '_' && name[i] != '.' && name[i] != '-') {
            return FALSE;
        }
    }
    return TRUE;
}

/* The descriptor must be a memfd carrying `seals`; returns its size. */
static off_t check_memfd(int fd, int seals, const char *what) {
    char link[64], target[256] = "";
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0 || strncmp(target, "/memfd:", 7) != 0) fail(what, "not a memfd");
    int have = fcntl(fd, F_GET_SEALS);
    if (have < 0 || (have & seals) != seals) fail(what, "the required seals are missing");
    struct stat st;
    if (fstat(fd, &st) < 0) fail(what, strerror(errno));
    return st.st_size;
}

/* Maps and validates a segment's header (FORMAT.md, "Validation"); closes `fd`. */
static Segment open_segment(int fd) {
    Segment s = {0};
    off_t size = check_memfd(fd, REQUIRED_SEALS, "segment");
    if (size < 8192) fail("segment", "smaller than 8192 bytes");
    void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) fail("segment", strerror(errno));
    uint8_t head[280];
    memcpy(head, m, sizeof head);      /* read once, check the copy */
    if (u64(head) != 0x31475355424D4853ull) fail("segment", "bad magic");
    if (u32(head + 8) != 1) fail("segment", "format version is not 1");
    if (u32(head + 12) != HEADER_SIZE) fail("segment", "header size is not 4096");
    if (u64(head + 272) != mix64(head, 272, 0x53484D4255534844ull)) fail("segment", "header checksum mismatch");
    s.capacity = u64(head + 16);
    if (s.capacity % 4096 || s.capacity < 8192 || s.capacity > (uint64_t)size) fail("segment", "bad capacity");
    if (!channel_name_ok(head + 72, u16(head + 68))) fail("segment", "bad channel name");
    static const uint8_t zero[16];
    if (memcmp(head + 24, zero, 16) == 0) fail("segment", "zero segment ID");
    for (int i = 0; i < 16; i++) snprintf(s.name + 2 * i, 3, "%02x", head[24 + i]);
    s.base = m;
    s.size = size;
    s.generation = u64(head + 40);
    s.base_sequence = u64(head + 48);
    return s;
}

/* OpenSegment(name) → (h, a{sv}): the segment, and the doorbell if registered.
 * Returns FALSE when the registry does not have it (NotFound). */
static gboolean registry_open(const char *name, Segment *out) {
    GUnixFDList *fds = NULL;
    GError *error = NULL;
    GVariant *reply = g_dbus_connection_call_with_unix_fd_list_sync(
        S.bus, REGISTRY, REGISTRY_PATH, REGISTRY, "OpenSegment", g_variant_new("(s)", name),
        G_VARIANT_TYPE("(ha{sv})"), G_DBUS_CALL_FLAGS_NONE, 25000, NULL, &fds, NULL, &error);
    if (!reply) {
        gboolean missing = g_str_has_suffix(g_dbus_error_get_remote_error(error) ?: "", ".NotFound");
        if (!missing) fail("OpenSegment", error->message);
        g_error_free(error);
        return FALSE;
    }
    gint32 index, bell = -1;
    GVariant *info;
    g_variant_get(reply, "(h@a{sv})", &index, &info);
    g_variant_lookup(info, "doorbell", "h", &bell);
    if (!fds || index < 0 || index >= g_unix_fd_list_get_length(fds)) fail("OpenSegment", "no descriptor");
    *out = open_segment(g_unix_fd_list_get(fds, index, NULL));
    if (strcmp(out->name, name) != 0) fail("OpenSegment", "the registry sent another segment");
    if (bell >= 0 && bell < g_unix_fd_list_get_length(fds)) {
        int fd = g_unix_fd_list_get(fds, bell, NULL);
        /* Sealed against resizing (so no SIGBUS) and a page at least; contents untrusted. */
        if (check_memfd(fd, DOORBELL_SEALS, "doorbell") >= 4096) {
            void *d = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (d != MAP_FAILED) S.doorbell = d;
        }
        close(fd);
    }
    g_variant_unref(info);
    g_variant_unref(reply);
    g_object_unref(fds);
    return TRUE;
}

/* The channel's current segment and owner (Channel1 properties), FALSE if none. */
static gboolean current_segment(char name[33], char *owner, size_t owner_size) {
    GString *path = g_string_new(REGISTRY_PATH "/channel/");
    for (size_t i = 0; S.channel[i]; i++) {                /* sd_bus_path_encode */
        unsigned char c = S.channel[i];
        if (g_ascii_isalpha(c) || (g_ascii_isdigit(c) && i > 0)) g_string_append_c(path, c);
        else g_string_append_printf(path, "_%02x", c);
    }
    GVariant *reply = g_dbus_connection_call_sync(
        S.bus, REGISTRY, path->str, "org.freedesktop.DBus.Properties", "GetAll", g_variant_new("(s)", "org.shmbus.Channel1"),
        G_VARIANT_TYPE("(a{sv})"), G_DBUS_CALL_FLAGS_NONE, 25000, NULL, NULL);
    g_string_free(path, TRUE);
    if (!reply) return FALSE;
    GVariant *props = g_variant_get_child_value(reply, 0);
    const char *segment = "", *who = "";
    g_variant_lookup(props, "CurrentSegment", "&s", &segment);
    g_variant_lookup(props, "Owner", "&s", &who);
    gboolean found = strlen(segment) == 32;
    if (found) g_strlcpy(name, segment, 33);
    g_strlcpy(owner, who, owner_size);
    g_variant_unref(props);
    g_variant_unref(reply);
    return found;
}

static void move_to(Segment next) {
    munmap((void *)S.seg.base, S.seg.size);
    /* A segment whose base is below what was read starts a new history: read it all. */
    if (next.base_sequence < S.last) S.have_last = FALSE;
    S.seg = next;
    S.position = HEADER_SIZE;
    S.limit = 0;
}

/* Validates the record at the position (FORMAT.md, "Validation"); returns its length. */
static uint64_t read_record(uint64_t *sequence, uint64_t *expiry, uint32_t *flags, char *key, uint64_t *payload,
                            uint64_t *payload_length) {
    uint64_t at = S.position, end = S.limit;
    if (at % 64 || at + 64 > end) fail("record", "header past the committed end");
    uint8_t h[64];
    memcpy(h, S.seg.base + at, 64);
    uint64_t length = u64(h + 8), plen = u64(h + 40);
    uint32_t poff = u32(h + 48);
    uint16_t klen = u16(h + 52);
    if (u32(h) != 0x4B4E4843u) fail("record", "bad magic");
    if (length < 64 || length % 64 || length > end - at) fail("record", "bad length");
    if (klen > 255 || poff % 64 || poff < 64u + klen) fail("record", "bad key or payload offset");
    if (poff > length || plen > length - poff) fail("record", "payload past the record");
    memcpy(key, S.seg.base + at + 64, klen);
    key[klen] = 0;
    memset(h + 4, 0, 4);               /* flags are not covered */
    if (mix64((uint8_t *)key, klen, mix64(h, 56, 0x53484D4255535243ull)) != u64(h + 56)) fail("record", "checksum mismatch");
    if (!g_utf8_validate(key, klen, NULL)) fail("record", "key is not UTF-8");
    *sequence = u64(h + 16);
    *expiry = u64(h + 32);
    *flags = load32(S.seg.base + at + 4);
    *payload = at + poff;
    *payload_length = plen;
    return length;
}

static void print_chunk(uint64_t sequence, const char *key, uint64_t at, uint64_t length) {
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    g_checksum_update(sum, S.seg.base + at, length);       /* in place */
    printf("sequence %llu key %s length %llu sha256 %s\n", (unsigned long long)sequence, *key ? key : "-",
           (unsigned long long)length, g_checksum_get_string(sum));
    g_checksum_free(sum);
}

/* Reads everything committed, following successors; FALSE once done. */
static gboolean drain(gpointer unused) {
    (void)unused;
again:
    for (;;) {
        if (S.count && S.received >= S.count) { g_main_loop_quit(S.loop); return G_SOURCE_REMOVE; }
        if (S.position >= S.limit) {
            uint32_t state = load32(S.seg.base + 512);     /* state first, then the commit word */
            uint64_t end = load64(S.seg.base + 384);
            if (end < HEADER_SIZE || end > S.seg.capacity || end % 64) fail("segment", "bad committed end");
            S.limit = end;
            if (S.position >= S.limit) {
                if (!(state & 1)) break;
                char next[33];
                for (int i = 0; i < 16; i++) snprintf(next + 2 * i, 3, "%02x", S.seg.base[520 + i]);
                Segment seg;
                char owner[256];
                if (strcmp(next, "00000000000000000000000000000000") == 0 || strcmp(next, S.seg.name) == 0)
                    fail("segment", "retired without a valid successor");
                if (registry_open(next, &seg) ||
                    (current_segment(next, owner, sizeof owner) && strcmp(next, S.seg.name) && registry_open(next, &seg)))
                    move_to(seg);
                else
                    break;                                 /* not there yet: look again later */
                continue;
            }
        }
        uint64_t sequence, expiry, payload, length;
        uint32_t flags;
        char key[256];
        uint64_t record = read_record(&sequence, &expiry, &flags, key, &payload, &length);
        if (S.have_last && sequence <= S.last) { S.position += record; continue; }   /* a copy */
        if (S.have_last && sequence > S.last + 1) {
            printf("gap: missed %llu chunks after sequence %llu\n", (unsigned long long)(sequence - S.last - 1),
                   (unsigned long long)S.last);
            S.last = sequence - 1;
        }
        S.position += record;
        S.last = sequence;
        S.have_last = TRUE;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        uint64_t ns = (uint64_t)now.tv_sec * 1000000000ull + now.tv_nsec;
        if (flags & 1 || (expiry && ns >= expiry)) continue;          /* obsolete or expired */
        print_chunk(sequence, key, payload, length);
        S.received++;
    }
    fflush(stdout);
    if (S.owner_left && S.until_left) {
        printf("publisher %s left\n", *S.owner ? S.owner : "(none)");
        g_main_loop_quit(S.loop);
        return G_SOURCE_REMOVE;
    }
    if (S.doorbell) {                  /* read everything: say so, then look once more */
        __atomic_store_n(&S.doorbell[4], 1, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (load64(S.seg.base + 384) > S.position || (load32(S.seg.base + 512) & 1)) goto again;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean drain_once(gpointer unused) {
    drain(unused);
    return G_SOURCE_REMOVE;
}

static void committed(GDBusConnection *c, const char *sender, const char *path, const char *iface, const char *signal,
                      GVariant *args, gpointer unused) {
    (void)c; (void)path; (void)iface; (void)signal; (void)args; (void)unused;
    if (sender && strcmp(sender, S.owner) == 0) drain(NULL);       /* only the owner announces commits */
}

static void owner_vanished(GDBusConnection *c, const char *name, gpointer unused) {
    (void)c; (void)name; (void)unused;
    S.owner_left = TRUE;
    drain(NULL);
}

int main(int argc, char **argv) {
    const char *address = NULL, *start = "now";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bus") && i + 1 < argc) address = argv[++i];
        else if (!strcmp(argv[i], "--from") && i + 1 < argc) start = argv[++i];
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) S.count = atol(argv[++i]);
        else if (!strcmp(argv[i], "--until-publisher-leaves")) S.until_left = TRUE;
        else if (argv[i][0] != '-' && !S.channel) S.channel = argv[i];
        else fail("usage", "CHANNEL [--bus ADDRESS] [--from oldest|now|N] [--count N] [--until-publisher-leaves]");
    }
    if (!S.channel || !channel_name_ok((const uint8_t *)S.channel, strlen(S.channel))) fail("usage", "a valid CHANNEL");
    GError *error = NULL;
    S.bus = address ? g_dbus_connection_new_for_address_sync(
                          address, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                          NULL, NULL, &error)
                    : g_bus_get_sync(G_BUS_TYPE_SESSION, NULL, &error);
    if (!S.bus) fail("bus", error->message);
    /* Listen first, then look: nothing committed after this is missed. */
    g_dbus_connection_signal_subscribe(S.bus, NULL, "org.shmbus.Publisher1", "Committed", "/org/shmbus/Publisher1",
                                       S.channel, G_DBUS_SIGNAL_FLAGS_NONE, committed, NULL, NULL);
    char name[33];
    if (!current_segment(name, S.owner, sizeof S.owner) || !registry_open(name, &S.seg))
        fail("registry", "no such channel");
    S.position = HEADER_SIZE;
    if (!strcmp(start, "now")) {
        S.position = load64(S.seg.base + 384);
        S.last = load64(S.seg.base + 392);
        S.have_last = TRUE;
    } else if (strcmp(start, "oldest") != 0) {
        unsigned long long first = strtoull(start, NULL, 10);
        S.have_last = first > 0;
        S.last = first ? first - 1 : 0;
    }
    if (*S.owner) g_bus_watch_name_on_connection(S.bus, S.owner, G_BUS_NAME_WATCHER_FLAGS_NONE, NULL, owner_vanished, NULL, NULL);
    else S.owner_left = TRUE;          /* persistent segments whose publisher is gone */
    S.loop = g_main_loop_new(NULL, FALSE);
    g_timeout_add(100, drain, NULL);   /* a lost signal delays, never stalls */
    g_idle_add(drain_once, NULL);
    g_main_loop_run(S.loop);
    return 0;
}
