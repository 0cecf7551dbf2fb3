#ifndef CSHMBUS_LINUX_H
#define CSHMBUS_LINUX_H

/* The Linux calls ShmBus needs that Swift's Glibc module does not import:
 * memfd_create and its flags, the F_SEAL_* file seals, futex wait/wake and
 * eventfd. Every function is a thin wrapper: it returns what the kernel
 * returned and leaves errno as the kernel set it. */

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* memfd_create(2) flags. */
extern const unsigned int shmbus_MFD_CLOEXEC;
extern const unsigned int shmbus_MFD_ALLOW_SEALING;

/* fcntl(2) file seals. */
extern const int shmbus_F_SEAL_SEAL;
extern const int shmbus_F_SEAL_SHRINK;
extern const int shmbus_F_SEAL_GROW;
extern const int shmbus_F_SEAL_WRITE;
extern const int shmbus_F_SEAL_FUTURE_WRITE;

/* memfd_create(2). Returns a file descriptor or -1 with errno set. */
int shmbus_memfd_create(const char *name, unsigned int flags);

/* fcntl(fd, F_ADD_SEALS, seals). Returns 0 or -1 with errno set. */
int shmbus_add_seals(int fd, int seals);

/* fcntl(fd, F_GET_SEALS). Returns the seal bit set, or -1 with errno set
 * (EINVAL when fd is not a file that supports sealing, e.g. not a memfd). */
int shmbus_get_seals(int fd);

/* fcntl(fd, F_GETFL): the descriptor's access mode and status flags, or -1 with
 * errno set (fcntl is variadic: Swift cannot call it). */
int shmbus_get_status_flags(int fd);

/* copy_file_range(2) of length bytes from in_fd at *in_offset to out_fd at
 * *out_offset (both advanced), flags 0: the kernel copies, no byte passes
 * through user space. Returns the bytes copied (0 at in_fd's end) or -1 with
 * errno set (EXDEV, EINVAL, EOPNOTSUPP where the file systems cannot). */
int64_t shmbus_copy_file_range(int in_fd, int64_t *in_offset, int out_fd, int64_t *out_offset, size_t length);

/* sendfile(2) of length bytes from in_fd at *in_offset (advanced) to out_fd at its
 * file position: copy_file_range's fallback, also in the kernel. Returns the bytes
 * copied or -1 with errno set. */
int64_t shmbus_sendfile(int out_fd, int in_fd, int64_t *in_offset, size_t length);

/* futex(2) FUTEX_WAIT on a word in shared memory (not FUTEX_PRIVATE: waiter
 * and waker may be different processes mapping the same memfd). Sleeps while
 * *word == expected, for at most timeout_ns nanoseconds (negative: forever).
 * Returns 0 when woken, -1 with errno EAGAIN (value differed), ETIMEDOUT or
 * EINTR. */
int shmbus_futex_wait(const uint32_t *word, uint32_t expected, int64_t timeout_ns);

/* futex(2) FUTEX_WAKE: wakes at most count waiters on word. Returns the
 * number woken or -1 with errno set. */
int shmbus_futex_wake(const uint32_t *word, int count);

/* futex(2) FUTEX_CMP_REQUEUE: if *word == expected, wakes at most wake waiters on
 * word and moves at most requeue others to wait on target instead. Returns the
 * number woken and moved, or -1 with errno set (EAGAIN: the value differed). It
 * needs only read access to word: the tests' hostile reader uses it to show what
 * any holder of a mapping can do to the waiters on it. */
int shmbus_futex_cmp_requeue(const uint32_t *word, uint32_t expected, int wake, int requeue, const uint32_t *target);

/* eventfd(2) with EFD_CLOEXEC | EFD_NONBLOCK. */
int shmbus_eventfd(void);

/* malloc_trim(3) with pad 0: glibc returns the free memory of every arena to the
 * kernel (madvise MADV_DONTNEED on free pages, and trims each heap's top). Returns 1
 * when memory was released, 0 otherwise. */
int shmbus_malloc_trim(void);

/* mallinfo2(3): bytes in use (uordblks) and bytes free (fordblks) in all arenas, to
 * tell whether a trim has anything to give back. */
void shmbus_malloc_usage(size_t *in_use, size_t *free_bytes);

/* ioctl(2) SIOCOUTQ: the bytes a socket holds that its peer has not read yet (for a
 * Unix stream socket, the memory its queued buffers take, overhead included).
 * Returns them, or -1 with errno set. (ioctl is variadic: Swift cannot call it.) */
int shmbus_socket_unsent(int fd);

/* ioctl(2) TIOCGWINSZ: the terminal's rows and columns (`shmbus top` lays its table
 * out to them). Returns 0, or -1 with errno set (ENOTTY for anything but a terminal). */
int shmbus_window_size(int fd, unsigned short *rows, unsigned short *columns);

/* accept4(2) with SOCK_CLOEXEC (a _GNU_SOURCE call Glibc's module does not show): the
 * connection's descriptor, or -1 with errno set. Close-on-exec from the start, so that
 * no child the daemon spawns meanwhile (the keeper) inherits it. */
int shmbus_accept_cloexec(int fd);

/* pidfd_open(2) of pid (flags 0; pidfds are always close-on-exec). Returns the
 * descriptor or -1 with errno set. */
int shmbus_pidfd_open(int pid);

/* pidfd_send_signal(2) of signal to the process pidfd names (0 checks that it
 * still exists). Returns 0 or -1 with errno set (ESRCH once it has ended). */
int shmbus_pidfd_send_signal(int pidfd, int signal);

/* open(2) of a directory with O_PATH | O_DIRECTORY | O_CLOEXEC (O_PATH needs
 * _GNU_SOURCE, which the Swift importer does not define). */
int shmbus_open_directory_path(const char *path);

/* posix_spawn(3) of path with argv/envp, with an empty signal mask and default
 * signal dispositions in the child (a Swift process blocks most signals in its
 * threads, and children would inherit that), and with fd_map[2*i] dup2'ed onto
 * fd_map[2*i+1] for i < fd_map_pairs. Returns 0 and stores the pid, or an errno. */
#include <sys/types.h>
int shmbus_spawn(const char *path, char *const argv[], char *const envp[],
                 const int *fd_map, int fd_map_pairs, pid_t *pid_out);

/* pipe2(fds, O_CLOEXEC). */
int shmbus_pipe_cloexec(int fds[2]);

/* Atomic loads and stores on memory that may be mapped read-only in this
 * process (a reader's view of a sealed segment): C11 atomics accept const
 * pointers, and on every Linux target a plain acquire load never writes. */
uint64_t shmbus_load_acquire_u64(const uint64_t *p);
uint32_t shmbus_load_acquire_u32(const uint32_t *p);
void shmbus_store_release_u64(uint64_t *p, uint64_t v);
void shmbus_store_release_u32(uint32_t *p, uint32_t v);
uint32_t shmbus_fetch_or_u32(uint32_t *p, uint32_t bits);
uint32_t shmbus_exchange_u32(uint32_t *p, uint32_t v);
uint32_t shmbus_fetch_add_u32(uint32_t *p, uint32_t v);
uint32_t shmbus_fetch_sub_u32(uint32_t *p, uint32_t v);
void shmbus_fence_seq_cst(void);

/* Spins while the 64-bit word at p equals expected, at most iterations times,
 * with the CPU's spin-wait hint between two acquire loads (x86 `pause`, arm64
 * `yield`; nothing elsewhere): tells the core that this is a busy wait, so it
 * saves power and gives the sibling hyperthread the pipeline. Returns the last
 * value loaded (expected: the iterations ran out). Bounded by iterations alone:
 * nothing in the word can make it loop longer (the caller checks its clock
 * between two calls). */
uint64_t shmbus_spin_while_equal_u64(const uint64_t *p, uint64_t expected, uint32_t iterations);

/* The segment record checksum (docs/FORMAT.md, "Checksums"): for each
 * little-endian 64-bit word w of the input (the last one zero-padded),
 * h = (h ^ w) * 0x9E3779B97F4A7C15; h ^= h >> 29. Starts from h = seed.
 * Inline: every record is checked with it, once when written and once per reader,
 * and for a 64-byte chunk the call cost as much as the seven words (perf of the
 * 64-byte flood, docs/BENCHMARKS.md). */
static inline uint64_t shmbus_mix64(const void *data, size_t length, uint64_t seed) {
    const unsigned char *bytes = (const unsigned char *)data;
    uint64_t h = seed;
    size_t i = 0;
    for (; i + 8 <= length; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, bytes + i, 8); /* little-endian targets only (x86_64, aarch64) */
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    if (i < length) {
        uint64_t w = 0;
        __builtin_memcpy(&w, bytes + i, length - i);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    return h;
}

/* madvise(addr, length, MADV_POPULATE_READ) (Linux 5.14): populate the page tables
 * of a read-only range in one call instead of one fault per few pages. Returns 0 or
 * -1 with errno set (EINVAL on older kernels). addr need not be page-aligned. */
int shmbus_populate_read(const void *addr, size_t length);

/* madvise(addr, length, MADV_HUGEPAGE): ask for transparent huge pages in a shared
 * memory mapping. Shared memory gets them only where the administrator allows it
 * (/sys/kernel/mm/transparent_hugepage/shmem_enabled is advise, within_size or
 * always); elsewhere the call succeeds and changes nothing. Returns 0 or -1 with errno
 * set (EINVAL on kernels without THP). addr must be page-aligned. */
int shmbus_advise_huge_pages(void *addr, size_t length);

/* madvise(addr, length, MADV_POPULATE_WRITE) (Linux 5.14): fault the pages of a
 * writable shared mapping in, allocating them and filling the page tables
 * writable, without writing to them: the bytes already there stay as they are.
 * Publishers call it off the publish path so that copying a payload into fresh
 * segment memory takes no page faults. Returns 0 or -1 with errno set (EINVAL on
 * older kernels or unsupported mappings, ENOMEM, EFAULT). addr must be
 * page-aligned. */
int shmbus_populate_write(void *addr, size_t length);

/* fallocate(fd, 0, offset, length): allocate the file's pages (for a memfd,
 * zeroed shmem pages) without changing its size or any byte already written; the
 * fallback when MADV_POPULATE_WRITE is refused (the writer then takes only minor
 * faults). Allowed on a sealed memfd within its size (F_SEAL_GROW refuses only
 * growth), through a descriptor opened for writing. Returns 0 or -1 with errno
 * set. */
int shmbus_fallocate(int fd, int64_t offset, int64_t length);

/* setns(fd, CLONE_NEWNET): moves the calling thread (only it) into the network
 * namespace fd refers to (an `ip netns` file, /run/netns/NAME); the sockets it opens
 * afterwards, and the threads it starts, are that namespace's. For the bridge's
 * two-host tests. Returns 0 or -1 with errno set. */
int shmbus_enter_network_namespace(int fd);

#ifdef __cplusplus
}
#endif

#endif
