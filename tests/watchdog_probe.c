// One watchdog scenario per run, for test_watchdog.sh:
//   ok [S [L]]  any world, timeout 2 s: about S (5) s of uneven steps with allreduces and
//          barriers (one wait of 1.2 s); then one rank stops its watchdog L (2.5) s after the
//          others -> exits 0 with no watchdog message
//   hang   alone, timeout 1 s: enters "test hang" and sleeps -> the watchdog exits 3
//   stop   2 ranks, timeout 3 s: rank 1 stops itself (SIGSTOP) after 1 s while rank 0 waits in
//          a barrier -> the job ends, naming rank 1
//   stop0  the same with rank 0 stopped
//   die    2 ranks, timeout 3 s: rank 1 kills itself (SIGKILL) after 1 s
//   late   2 ranks, timeout 2 s: rank 1 stays alive but out of the barrier rank 0 waits in
//          -> rank 0's deadline ends the job, naming rank 1 as alive outside a collective
#include "dist/dist.h"
#include "dist/watchdog.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {}
}

// Steps until `seconds` have passed on every rank; returns the number of failed checks.
static int run_ok(sd_dist *d, double seconds, double linger) {
  double t0 = now();
  int bad = 0;
  long step = 0;
  for (;; step++) {
    sd_watchdog_set_step(step);
    sleep_s(0.02 + 0.03 * d->rank);                       // uneven work: others wait
    if (step == 10 && d->rank == d->world - 1) sleep_s(1.2);  // a long wait under the timeout
    double v = (double)(d->rank + 1);
    sd_dist_allreduce_sum_f64(d, &v, 1, "test allreduce");
    if (v != (double)d->world * (d->world + 1) / 2) bad++;
    if (step % 5 == 0) sd_dist_barrier(d, "test barrier");
    int64_t done = now() - t0 >= seconds;
    sd_dist_allreduce_max_i64(d, &done, 1, "test done");
    if (done) break;
  }
  if (d->rank == 0) printf("watchdog_probe ok: %ld steps on %d ranks\n", step + 1, d->world);
  fflush(stdout);
  if (d->rank == (int)(step % d->world)) sleep_s(linger);  // the others wait for it in stop
  return bad;
}

// Rank `victim` stops (SIGSTOP), dies (SIGKILL) or, with sig 0, lingers out of the barrier
// for 30 s; the other rank waits in the barrier.
static void run_victim(sd_dist *d, int victim, int sig) {
  sd_watchdog_set_step(12);
  if (d->rank == victim) {
    sleep_s(sig ? 1.0 : 30.0);
    if (sig) {
      fprintf(stderr, "watchdog_probe: rank %d sends itself %s\n", d->rank,
              sig == SIGSTOP ? "SIGSTOP" : "SIGKILL");
      raise(sig);
    }
  } else {
    sleep_s(sig ? 1.5 : 0.0);
  }
  sd_dist_barrier(d, "test barrier");
  fprintf(stderr, "watchdog_probe: rank %d: the barrier returned\n", d->rank);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  sd_dist d;
  sd_dist_init(&d, &argc, &argv);
  int rc = 0;
  if (strcmp(mode, "ok") == 0) {
    sd_watchdog_start(&d, 2.0);
    rc = run_ok(&d, argc > 2 ? atof(argv[2]) : 5.0, argc > 3 ? atof(argv[3]) : 2.5) != 0;
  } else if (strcmp(mode, "hang") == 0) {
    sd_watchdog_start(&d, 1.0);
    int slot = sd_watchdog_enter("test hang");
    sleep_s(30);
    sd_watchdog_leave(slot);
    fprintf(stderr, "watchdog_probe: the watchdog did not end the hang\n");
    rc = 1;
  } else if (strcmp(mode, "stop") == 0 || strcmp(mode, "stop0") == 0 ||
             strcmp(mode, "die") == 0 || strcmp(mode, "late") == 0) {
    if (d.world != 2) {
      fprintf(stderr, "watchdog_probe: %s needs 2 ranks, not %d\n", mode, d.world);
      sd_dist_finalize(&d);
      return 2;
    }
    int late = strcmp(mode, "late") == 0;
    sd_watchdog_start(&d, late ? 2.0 : 3.0);
    run_victim(&d, strcmp(mode, "stop0") == 0 ? 0 : 1,
               late ? 0 : strcmp(mode, "die") == 0 ? SIGKILL : SIGSTOP);
    rc = 1;
  } else {
    fprintf(stderr, "usage: watchdog_probe ok [S [L]]|hang|stop|stop0|die|late (the last "
            "four on 2 ranks)\n");
    rc = 2;
  }
  sd_watchdog_stop();
  sd_dist_finalize(&d);
  return rc;
}
