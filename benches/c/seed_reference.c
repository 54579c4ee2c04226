/* The C reference of the issue: sqrt(|x|) in place over n doubles, then their
 * sum, with OpenMP threads. Built by the harness with
 *   cc -O3 -march=native -fno-math-errno -ffast-math -fopenmp
 * (-fno-math-errno lets the compiler use vsqrtpd, -ffast-math lets it
 * vectorize the sum), so it shows what the vector units of this machine do
 * with a compiler free to use all of them. Usage: seed_reference N REPEAT.
 * Prints: sqrt_ms=MEDIAN sum_ms=MEDIAN threads=T */
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

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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
    qsort(ts, repeat, sizeof(double), cmp);
    qsort(tm, repeat, sizeof(double), cmp);
    printf("sqrt_ms=%.4f sum_ms=%.4f threads=%d\n", ts[repeat / 2] * 1e3, tm[repeat / 2] * 1e3,
           omp_get_max_threads());
    return sink == 12345.0;
}
