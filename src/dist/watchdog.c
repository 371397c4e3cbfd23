// The watchdog (see watchdog.h): one thread that enforces the deadline of every entered
// operation and, under MPI with thread-multiple, exchanges heartbeats on the diagnostic
// communicator.
//
// Heartbeats form a star: ranks 1..n-1 beat to rank 0 and rank 0 beats to each of them, once
// a second. A beat is dropped while the previous one to that peer is still in flight, so the
// thread never blocks on a peer. A peer is named and the job ended when nothing has arrived
// from it for the timeout (counted from the start until its first beat; at least 3 beat
// intervals, so that a tiny test timeout cannot outrun the beats).
//
// Stop protocol: a stopping rank stops beating, sends "bye" to each of its peers (after its
// last beat, on the same tag, so MPI's ordering makes it the last message from it), and keeps
// receiving until every peer has said bye too and its own sends have completed. Then nothing
// is in flight on the diagnostic communicator and MPI_Finalize cannot trip over it. A peer
// that said bye is no longer expected to beat; while waiting, the others are still watched,
// so a peer that dies instead of stopping still ends the job.
#include "dist/watchdog.h"
#include "error.h"

#include <errno.h>
#include <mpi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { NSLOT = 4, TAG = 7001, MSG_BEAT = 1, MSG_BYE = 2 };
#define TICK_S 0.25         // how often the thread wakes up
#define STOP_TICK_S 0.01    // ... in the first second of the stop protocol
#define BEAT_S 1.0          // heartbeat interval
#define MIN_SILENCE_S 3.0   // a peer is never declared silent sooner
#define LATE_S 2.0          // a heartbeat older than this is worth mentioning

typedef struct beat {
  int32_t kind;             // MSG_BEAT or MSG_BYE
  int32_t busy;             // how many watched operations the sender is inside
  int64_t step, seq;
  char host[64];
  char what[48];            // the oldest of them ("" when none)
} beat;

typedef struct peer {
  int rank;
  int seen;                 // a beat has arrived
  int said_bye;             // its bye has arrived: no more messages from it
  int bye_sent;             // ours has been posted: no more messages to it
  double last_seen;         // arrival of its last message (the start before the first)
  beat last;                // its last beat
  beat out;                 // our message to it, in flight while req is active
  MPI_Request req;
} peer;

static struct {
  pthread_mutex_t mu;       // guards slot and stop
  pthread_cond_t cv;
  struct { const char *what; double t_enter; } slot[NSLOT];
  int stop;
  int on;                   // started (written by start/stop under mu)
  atomic_long step;
  // the rest is written by start before the thread exists, then used by the thread only
  sd_dist *d;
  double timeout, t_start;
  pthread_t thread;
  int hb;                   // heartbeats on
  MPI_Comm diag;
  peer *peers;
  int npeer;
  int64_t seq;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- the end of the job -------------------------------------------------------------------

typedef struct msgbuf { char s[8192]; size_t n; } msgbuf;

// Appends one line "[rank r@host] watchdog: ..." to m.
static void line(msgbuf *m, const char *fmt, ...) SD_PRINTF(2, 3);
static void line(msgbuf *m, const char *fmt, ...) {
  if (m->n >= sizeof m->s - 1) return;
  int k = snprintf(m->s + m->n, sizeof m->s - m->n, "[rank %d@%s] watchdog: ", g.d->rank,
                   g.d->host);
  if (k > 0) m->n += (size_t)k;
  if (m->n >= sizeof m->s - 1) { m->n = sizeof m->s - 1; return; }
  va_list ap;
  va_start(ap, fmt);
  k = vsnprintf(m->s + m->n, sizeof m->s - m->n, fmt, ap);
  va_end(ap);
  if (k > 0) m->n += (size_t)k;
  if (m->n >= sizeof m->s - 1) m->n = sizeof m->s - 2;
  m->s[m->n++] = '\n';
  m->s[m->n] = '\0';
}

static _Noreturn void end_job(const msgbuf *m) {
  fflush(stdout);
  fputs(m->s, stderr);
  fflush(stderr);
  if (g.d->active && g.d->thread_multiple) MPI_Abort(*(MPI_Comm *)g.d->comm, 3);
  _exit(3);
}

// "rank 3@host" once its host is known, else "rank 3".
static const char *peer_name(const peer *p, char *buf, size_t len) {
  if (p->seen) snprintf(buf, len, "rank %d@%s", p->rank, p->last.host);
  else snprintf(buf, len, "rank %d", p->rank);
  return buf;
}

// What a peer was doing at its last beat: "step 12, in 'grad allreduce'".
static const char *peer_state(const peer *p, char *buf, size_t len) {
  if (p->last.busy) snprintf(buf, len, "step %lld, in '%s'", (long long)p->last.step,
                             p->last.what);
  else snprintf(buf, len, "step %lld, not in a collective", (long long)p->last.step);
  return buf;
}

// ---- deadlines ----------------------------------------------------------------------------

// After the error line: the peers (but `skip`) that went quiet, and those alive but not in a
// collective: the likely stragglers.
static void describe_peers(msgbuf *m, double t, const peer *skip) {
  char name[128], state[128];
  int listed = 0;
  for (int i = 0; i < g.npeer && listed < 16; i++) {
    const peer *p = &g.peers[i];
    double age = t - p->last_seen;
    if (p->said_bye || p == skip) continue;
    if (!p->seen && age > LATE_S) {
      line(m, "  rank %d: no heartbeat since the start %.1f s ago", p->rank, age);
    } else if (age > LATE_S) {
      line(m, "  %s silent for %.1f s (last seen at %s)", peer_name(p, name, sizeof name), age,
           peer_state(p, state, sizeof state));
    } else if (p->seen && !p->last.busy) {
      line(m, "  %s is alive at %s", peer_name(p, name, sizeof name),
           peer_state(p, state, sizeof state));
    } else {
      continue;
    }
    listed++;
  }
}

static void check_deadlines(double t) {
  char what[128] = "";
  double age = 0;
  pthread_mutex_lock(&g.mu);
  for (int i = 0; i < NSLOT; i++)
    if (g.slot[i].what && t - g.slot[i].t_enter > age) {
      age = t - g.slot[i].t_enter;
      snprintf(what, sizeof what, "%s", g.slot[i].what);
    }
  pthread_mutex_unlock(&g.mu);
  if (age <= g.timeout) return;
  msgbuf m = {.n = 0};
  line(&m, "error: %s at step %ld has not completed after %.1f s (dist.timeout = %g s): %s",
       what, atomic_load(&g.step), age, g.timeout,
       g.d->world > 1 ? "another rank died or stalled" : "it is stuck");
  describe_peers(&m, t, NULL);
  end_job(&m);
}

// ---- heartbeats ---------------------------------------------------------------------------

static peer *peer_of(int rank) {
  for (int i = 0; i < g.npeer; i++)
    if (g.peers[i].rank == rank) return &g.peers[i];
  return NULL;
}

static void fill(beat *b, int kind) {
  memset(b, 0, sizeof *b);
  b->kind = kind;
  b->step = atomic_load(&g.step);
  b->seq = g.seq++;
  snprintf(b->host, sizeof b->host, "%s", g.d->host);
  double oldest = 0;
  pthread_mutex_lock(&g.mu);
  for (int i = 0; i < NSLOT; i++)
    if (g.slot[i].what) {
      if (!b->busy || g.slot[i].t_enter < oldest) {
        oldest = g.slot[i].t_enter;
        snprintf(b->what, sizeof b->what, "%s", g.slot[i].what);
      }
      b->busy++;
    }
  pthread_mutex_unlock(&g.mu);
}

static void post(peer *p, int kind) {
  fill(&p->out, kind);
  MPI_Isend(&p->out, (int)sizeof p->out, MPI_BYTE, p->rank, TAG, g.diag, &p->req);
}

// Everything that has arrived, without waiting.
static void receive(double t) {
  for (;;) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, TAG, g.diag, &flag, &st);
    if (!flag) return;
    beat b;
    MPI_Recv(&b, (int)sizeof b, MPI_BYTE, st.MPI_SOURCE, TAG, g.diag, MPI_STATUS_IGNORE);
    b.host[sizeof b.host - 1] = b.what[sizeof b.what - 1] = '\0';
    peer *p = peer_of(st.MPI_SOURCE);
    if (!p) continue;
    p->last_seen = t;
    if (b.kind == MSG_BYE) {
      p->said_bye = 1;
    } else {
      p->last = b;
      p->seen = 1;
    }
  }
}

// Completes finished sends; posts a beat (or, when stopping, a bye) to each peer whose
// previous message has gone.
static void send_due(int stopping, int beat_due) {
  for (int i = 0; i < g.npeer; i++) {
    peer *p = &g.peers[i];
    if (p->req != MPI_REQUEST_NULL) {
      int done = 0;
      MPI_Test(&p->req, &done, MPI_STATUS_IGNORE);
      if (!done) continue;  // a beat is dropped; a bye waits for the next tick
    }
    if (stopping && !p->bye_sent) {
      post(p, MSG_BYE);
      p->bye_sent = 1;
    } else if (!stopping && beat_due) {
      post(p, MSG_BEAT);
    }
  }
}

static void check_silence(double t) {
  double limit = g.timeout > MIN_SILENCE_S ? g.timeout : MIN_SILENCE_S;
  for (int i = 0; i < g.npeer; i++) {
    const peer *p = &g.peers[i];
    double age = t - p->last_seen;
    if (p->said_bye || age <= limit) continue;
    msgbuf m = {.n = 0};
    char name[128], state[128];
    if (p->seen)
      line(&m, "error: %s silent for %.1f s (last seen at %s; dist.timeout = %g s): the "
           "process died or stopped, or its node is unreachable",
           peer_name(p, name, sizeof name), age, peer_state(p, state, sizeof state), g.timeout);
    else
      line(&m, "error: rank %d sent no heartbeat in the %.1f s since the start "
           "(dist.timeout = %g s): it never started or is stuck before its watchdog",
           p->rank, age, g.timeout);
    describe_peers(&m, t, p);
    end_job(&m);
  }
}

// The stop protocol is complete: every peer said bye and every send of ours has gone.
static int handshake_done(void) {
  for (int i = 0; i < g.npeer; i++) {
    const peer *p = &g.peers[i];
    if (!p->said_bye || !p->bye_sent || p->req != MPI_REQUEST_NULL) return 0;
  }
  return 1;
}

// ---- the thread ---------------------------------------------------------------------------

// Sleeps for one tick or until stop is asked; returns the stop flag.
static int wait_tick(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  long ns = ts.tv_nsec + (long)(TICK_S * 1e9);
  ts.tv_sec += ns / 1000000000L;
  ts.tv_nsec = ns % 1000000000L;
  pthread_mutex_lock(&g.mu);
  while (!g.stop && pthread_cond_timedwait(&g.cv, &g.mu, &ts) != ETIMEDOUT) {}
  int stop = g.stop;
  pthread_mutex_unlock(&g.mu);
  return stop;
}

static void *watchdog_main(void *arg) {
  (void)arg;
  double next_beat = 0, t_stop = 0;
  int stopping = 0;
  for (;;) {
    double t = now();
    if (g.hb) {
      receive(t);
      send_due(stopping, t >= next_beat);
      if (t >= next_beat) next_beat = t + BEAT_S;
      check_silence(t);
    }
    check_deadlines(t);
    if (stopping && (!g.hb || handshake_done())) return NULL;
    if (stopping) {
      double tick = now() - t_stop < 1.0 ? STOP_TICK_S : TICK_S;
      nanosleep(&(struct timespec){0, (long)(tick * 1e9)}, NULL);
    } else if ((stopping = wait_tick())) {
      t_stop = now();
    }
  }
}

// ---- the API ------------------------------------------------------------------------------

void sd_watchdog_start(sd_dist *d, double timeout_s) {
  if (timeout_s <= 0 || g.on) return;
  g.d = d;
  g.timeout = timeout_s;
  g.t_start = now();
  g.stop = 0;
  g.seq = 0;
  g.hb = d->active && d->thread_multiple && d->world > 1;
  if (g.hb) {
    g.diag = *(MPI_Comm *)d->diag_comm;
    g.npeer = d->rank == 0 ? d->world - 1 : 1;
    g.peers = sd_xcalloc((size_t)g.npeer, sizeof *g.peers, "watchdog peers");
    for (int i = 0; i < g.npeer; i++) {
      g.peers[i].rank = d->rank == 0 ? i + 1 : 0;
      g.peers[i].last_seen = g.t_start;
      g.peers[i].req = MPI_REQUEST_NULL;
    }
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g.cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_lock(&g.mu);
  g.on = 1;
  pthread_mutex_unlock(&g.mu);
  int rc = pthread_create(&g.thread, NULL, watchdog_main, NULL);
  if (rc != 0) SD_FATAL("cannot start the watchdog thread: %s", strerror(rc));
}

void sd_watchdog_stop(void) {
  pthread_mutex_lock(&g.mu);
  int on = g.on;
  g.stop = 1;
  pthread_cond_signal(&g.cv);
  pthread_mutex_unlock(&g.mu);
  if (!on) return;
  pthread_join(g.thread, NULL);
  pthread_mutex_lock(&g.mu);
  g.on = 0;
  for (int i = 0; i < NSLOT; i++) g.slot[i].what = NULL;
  pthread_mutex_unlock(&g.mu);
  pthread_cond_destroy(&g.cv);
  free(g.peers);
  g.peers = NULL;
  g.npeer = 0;
  g.hb = 0;
}

int sd_watchdog_enter(const char *what) {
  int slot = -1;
  pthread_mutex_lock(&g.mu);
  for (int i = 0; g.on && i < NSLOT; i++)
    if (!g.slot[i].what) {
      g.slot[i].what = what ? what : "?";
      g.slot[i].t_enter = now();
      slot = i;
      break;
    }
  pthread_mutex_unlock(&g.mu);
  return slot;
}

void sd_watchdog_leave(int slot) {
  if (slot < 0 || slot >= NSLOT) return;
  pthread_mutex_lock(&g.mu);
  g.slot[slot].what = NULL;
  pthread_mutex_unlock(&g.mu);
}

void sd_watchdog_set_step(long step) { atomic_store(&g.step, step); }
