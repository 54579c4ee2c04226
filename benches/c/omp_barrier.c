/* libgomp's barrier, the reference for shmpar's barrier table: T OpenMP
 * threads meet at `#pragma omp barrier` over and over. A round is: all meet
 * once, then ITERS times; thread 0 times the ITERS meetings. Per-phase
 * latency = round time / ITERS, one sample per round (after one untimed
 * warm-up round), as shmpar_benches::barriers times the other barriers.
 *
 * Built by the harness with gcc -O3 -fopenmp and run with libgomp's
 * defaults (OMP_WAIT_POLICY unset: waiters spin for a while, then sleep on
 * a futex; fewer spins when threads outnumber CPUs), OMP_DYNAMIC=false so
 * the team has exactly T threads.
 *
 * Usage: omp_barrier THREADS ROUNDS ITERS
 * Prints: threads=T phase_us=A,B,C,... (one per round, microseconds) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int rounds = argc > 2 ? atoi(argv[2]) : 11;
    long iters = argc > 3 ? atol(argv[3]) : 5000;
    if (threads <= 0 || rounds <= 0 || iters <= 0) return 2;
    double *phase = malloc((rounds + 1) * sizeof(double));
    if (!phase) return 3;
    int team = 0;
    omp_set_dynamic(0);
#pragma omp parallel num_threads(threads)
    {
#pragma omp single
        team = omp_get_num_threads();
        /* Round 0 is the warm-up: the team's threads have just started. */
        for (int r = 0; r <= rounds; r++) {
            long n = r == 0 ? (iters + 9) / 10 : iters;
#pragma omp barrier
            double t0 = now();
            for (long i = 0; i < n; i++) {
#pragma omp barrier
            }
            if (omp_get_thread_num() == 0) phase[r] = (now() - t0) * 1e6 / n;
        }
    }
    printf("threads=%d phase_us=", team);
    for (int r = 1; r <= rounds; r++) printf(r == 1 ? "%.5f" : ",%.5f", phase[r]);
    printf("\n");
    free(phase);
    return team == threads ? 0 : 4;
}
