/* The C reference of the issue: sqrt(|x|) in place over n doubles, then their
 * sum, with OpenMP threads. Built by the harness with
 *   cc -O3 -march=native -fno-math-errno -ffast-math -fopenmp
 * (-fno-math-errno lets the compiler use vsqrtpd, -ffast-math lets it
 * vectorize the sum), so it shows what the vector units of this machine do
 * with a compiler free to use all of them. Usage: seed_reference N REPEAT.
 * Prints: threads=T sqrt_ms=A,B,... sum_ms=A,B,... (every timed repeat, in
 * milliseconds, in the order they ran: the harness takes medians and
 * spreads). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void print_list(const char *name, const double *xs, int n) {
    printf(" %s=", name);
    for (int i = 0; i < n; i++) printf(i ? ",%.4f" : "%.4f", xs[i] * 1e3);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000000;
    int repeat = argc > 2 ? atoi(argv[2]) : 11;
    if (n <= 0 || repeat <= 0) return 2;
    double *x = malloc(n * sizeof(double));
    double *ts = malloc(repeat * sizeof(double)), *tm = malloc(repeat * sizeof(double));
    if (!x || !ts || !tm) return 3;
#pragma omp parallel for
    for (long i = 0; i < n; i++) x[i] = (double)((i * 7919) % 20001) / 1000.0 - 10.0;
    volatile double sink = 0;
    for (int r = 0; r <= repeat; r++) {
        double t0 = now();
#pragma omp parallel for
        for (long i = 0; i < n; i++) x[i] = sqrt(fabs(x[i]));
        double t1 = now(), s = 0;
#pragma omp parallel for reduction(+ : s)
        for (long i = 0; i < n; i++) s += x[i];
        double t2 = now();
        sink += s;
        if (r > 0) { /* run 0 is the warm-up: first touch of the pages */
            ts[r - 1] = t1 - t0;
            tm[r - 1] = t2 - t1;
        }
    }
    printf("threads=%d", omp_get_max_threads());
    print_list("sqrt_ms", ts, repeat);
    print_list("sum_ms", tm, repeat);
    printf("\n");
    return sink == 12345.0;
}
