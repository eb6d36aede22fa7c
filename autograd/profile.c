/* Per-op timing (see profile.h). GPU timings are event pairs resolved at the next flush; CPU
 * timings are added at once. */
#include "profile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef LINNET_CUDA
#include "cuda/cuda_profile.h"
#endif

#define MAX_ROWS 256

typedef struct {
    const char *name;
    bool backward;
    double ms;
    long calls;
} row;

static row rows[MAX_ROWS];
static int n_rows;
static int enabled = -1; /* -1: environment not read yet */
static double cpu_start;

bool ln_profile_enabled(void) {
    if (enabled < 0) {
        const char *v = getenv("LINNET_PROFILE");
        enabled = v && *v && strcmp(v, "0") != 0;
    }
    return enabled;
}

static row *row_of(const char *name, bool backward) {
    for (int i = 0; i < n_rows; i++)
        if (rows[i].backward == backward && strcmp(rows[i].name, name) == 0) return &rows[i];
    if (n_rows == MAX_ROWS) return NULL;
    rows[n_rows] = (row){.name = name, .backward = backward};
    return &rows[n_rows++];
}

/* called by the CUDA side for each resolved event pair, and by the CPU path below */
void ln_profile_add(const char *name, bool backward, double ms) {
    row *r = row_of(name, backward);
    if (!r) return;
    r->ms += ms;
    r->calls++;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

void ln_profile_begin(const ln_node *n, bool backward) {
    (void)backward;
#ifdef LINNET_CUDA
    if (n->device == LN_CUDA) {
        ln_cuda_profile_mark(n->op->name, backward, false);
        return;
    }
#endif
    (void)n;
    cpu_start = now_ms();
}

void ln_profile_end(const ln_node *n, bool backward) {
#ifdef LINNET_CUDA
    if (n->device == LN_CUDA) {
        ln_cuda_profile_mark(n->op->name, backward, true);
        return;
    }
#endif
    ln_profile_add(n->op->name, backward, now_ms() - cpu_start);
}

void ln_profile_flush(void) {
#ifdef LINNET_CUDA
    ln_cuda_profile_flush();
#endif
}

void ln_profile_reset(void) {
    ln_profile_flush();
    n_rows = 0;
}

static int by_time(const void *a, const void *b) {
    double x = ((const row *)a)->ms, y = ((const row *)b)->ms;
    return (x < y) - (x > y);
}

void ln_profile_print(FILE *f, const char *title) {
    ln_profile_flush();
    double total = 0;
    for (int i = 0; i < n_rows; i++) total += rows[i].ms;
    qsort(rows, (size_t)n_rows, sizeof *rows, by_time);
    fprintf(f, "--- %s: %.1f ms in ops ---\n%-24s %-8s %10s %8s %7s\n", title, total, "op", "pass", "ms", "calls",
            "share");
    for (int i = 0; i < n_rows; i++)
        fprintf(f, "%-24s %-8s %10.2f %8ld %6.1f%%\n", rows[i].name, rows[i].backward ? "backward" : "forward",
                rows[i].ms, rows[i].calls, total > 0 ? 100.0 * rows[i].ms / total : 0.0);
    n_rows = 0;
}
