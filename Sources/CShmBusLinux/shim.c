#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* also set by Package.swift's cSettings */
#endif
#include "CShmBusLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/sockios.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010 /* Linux 5.1; older glibc headers lack it */
#endif

const unsigned int shmbus_MFD_CLOEXEC = MFD_CLOEXEC;
const unsigned int shmbus_MFD_ALLOW_SEALING = MFD_ALLOW_SEALING;

const int shmbus_F_SEAL_SEAL = F_SEAL_SEAL;
const int shmbus_F_SEAL_SHRINK = F_SEAL_SHRINK;
const int shmbus_F_SEAL_GROW = F_SEAL_GROW;
const int shmbus_F_SEAL_WRITE = F_SEAL_WRITE;
const int shmbus_F_SEAL_FUTURE_WRITE = F_SEAL_FUTURE_WRITE;

int shmbus_memfd_create(const char *name, unsigned int flags) {
    return memfd_create(name, flags);
}

int shmbus_add_seals(int fd, int seals) {
    return fcntl(fd, F_ADD_SEALS, seals);
}

int shmbus_get_seals(int fd) {
    return fcntl(fd, F_GET_SEALS);
}

int shmbus_get_status_flags(int fd) {
    return fcntl(fd, F_GETFL);
}

int64_t shmbus_copy_file_range(int in_fd, int64_t *in_offset, int out_fd, int64_t *out_offset, size_t length) {
    loff_t in = (loff_t)*in_offset, out = (loff_t)*out_offset;
    ssize_t n = copy_file_range(in_fd, &in, out_fd, &out, length, 0);
    *in_offset = (int64_t)in;
    *out_offset = (int64_t)out;
    return (int64_t)n;
}

int64_t shmbus_sendfile(int out_fd, int in_fd, int64_t *in_offset, size_t length) {
    off_t in = (off_t)*in_offset;
    ssize_t n = sendfile(out_fd, in_fd, &in, length);
    *in_offset = (int64_t)in;
    return (int64_t)n;
}

int shmbus_futex_wait(const uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts;
    struct timespec *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tsp = &ts;
    }
    long rc = syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0);
    return rc == 0 ? 0 : -1;
}

int shmbus_futex_wake(const uint32_t *word, int count) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

int shmbus_pidfd_open(int pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int shmbus_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

int shmbus_open_directory_path(const char *path) {
    return open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

int shmbus_futex_cmp_requeue(const uint32_t *word, uint32_t expected, int wake, int requeue, const uint32_t *target) {
    /* The fourth argument is val2 (how many to requeue), passed where the timeout goes. */
    return (int)syscall(SYS_futex, word, FUTEX_CMP_REQUEUE, wake, (unsigned long)requeue, target, expected);
}

int shmbus_eventfd(void) {
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

int shmbus_malloc_trim(void) {
    return malloc_trim(0);
}

void shmbus_malloc_usage(size_t *in_use, size_t *free_bytes) {
    struct mallinfo2 info = mallinfo2();
    *in_use = info.uordblks;
    *free_bytes = info.fordblks;
}

int shmbus_socket_unsent(int fd) {
    int bytes = 0;
    if (ioctl(fd, SIOCOUTQ, &bytes) != 0) return -1;
    return bytes;
}

int shmbus_window_size(int fd, unsigned short *rows, unsigned short *columns) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0) return -1;
    *rows = size.ws_row;
    *columns = size.ws_col;
    return 0;
}

int shmbus_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

uint64_t shmbus_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
uint32_t shmbus_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void shmbus_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
void shmbus_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
uint32_t shmbus_fetch_or_u32(uint32_t *p, uint32_t bits) { return __atomic_fetch_or(p, bits, __ATOMIC_ACQ_REL); }
uint32_t shmbus_exchange_u32(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL); }
uint32_t shmbus_fetch_add_u32(uint32_t *p, uint32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
uint32_t shmbus_fetch_sub_u32(uint32_t *p, uint32_t v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
void shmbus_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

static inline void shmbus_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

uint64_t shmbus_spin_while_equal_u64(const uint64_t *p, uint64_t expected, uint32_t iterations) {
    uint64_t value = __atomic_load_n(p, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < iterations && value == expected; i++) {
        shmbus_cpu_relax();
        value = __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    return value;
}

int shmbus_spawn(const char *path, char *const argv[], char *const envp[],
                 const int *fd_map, int fd_map_pairs, pid_t *pid_out) {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    sigset_t empty, all;
    int rc = posix_spawnattr_init(&attr);
    if (rc != 0) return rc;
    rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) { posix_spawnattr_destroy(&attr); return rc; }
    sigemptyset(&empty);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    for (int i = 0; i < fd_map_pairs && rc == 0; i++) {
        rc = posix_spawn_file_actions_adddup2(&actions, fd_map[2 * i], fd_map[2 * i + 1]);
    }
    if (rc == 0) rc = posix_spawn(pid_out, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc;
}

int shmbus_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

int shmbus_advise_huge_pages(void *addr, size_t length) {
    return madvise(addr, length, MADV_HUGEPAGE);
}

int shmbus_populate_read(const void *addr, size_t length) {
    uintptr_t start = (uintptr_t)addr & ~(uintptr_t)4095;
    size_t span = ((uintptr_t)addr + length) - start;
    return madvise((void *)start, span, MADV_POPULATE_READ);
}

int shmbus_populate_write(void *addr, size_t length) {
    return madvise(addr, length, MADV_POPULATE_WRITE);
}

int shmbus_fallocate(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, 0, (off_t)offset, (off_t)length);
}


int shmbus_enter_network_namespace(int fd) {
    return setns(fd, CLONE_NEWNET);
}
