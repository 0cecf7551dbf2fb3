/* The C floor beside python_cost.py: two processes pass one byte back and forth over a
 * pair of pipes, blocking in read(2), ROUNDS times; prints the round trips' p50 and p99
 * in nanoseconds. Each round trip is two cross-process wake-ups, as python_cost.py's
 * Python version of the same loop is; the difference between the two is what Python
 * adds to a blocking wake-up on this machine. Built by `make bench-peers` into
 * .build/peers/pingpong. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    int ping[2], pong[2];
    if (rounds <= 0 || pipe(ping) || pipe(pong)) return 1;
    char byte = 0;
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) {
        close(ping[1]);
        close(pong[0]);
        while (read(ping[0], &byte, 1) == 1) {
            if (write(pong[1], &byte, 1) != 1) break;
        }
        _exit(0);
    }
    close(ping[0]);
    close(pong[1]);
    uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)rounds);
    if (!samples) return 1;
    for (int i = 0; i < rounds; i++) {
        uint64_t start = now();
        if (write(ping[1], &byte, 1) != 1 || read(pong[0], &byte, 1) != 1) return 1;
        samples[i] = now() - start;
    }
    close(ping[1]);
    waitpid(child, NULL, 0);
    qsort(samples, (size_t)rounds, sizeof(uint64_t), compare);
    printf("%llu %llu\n", (unsigned long long)samples[rounds / 2], (unsigned long long)samples[(size_t)rounds * 99 / 100]);
    return 0;
}
