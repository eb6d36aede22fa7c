/* The checkpoint files of a run directory (run_dir.h): naming, finding the newest for resume,
 * pruning. File names and directory entries only; the files' contents are h5_checkpoint.c's. */
#include "checkpoints/run_dir.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/error.h"

void ln_checkpoint_path(const char *dir, int64_t step, char *path, size_t len) {
    snprintf(path, len, "%s/step-%08lld.h5", dir, (long long)step);
}

/* "step-<digits>.h5" exactly; anything else (".tmp" leftovers, notes, overflow) is not ours. */
static bool parse_step_name(const char *name, int64_t *step) {
    if (strncmp(name, "step-", 5) != 0) return false;
    const char *p = name + 5;
    if (!isdigit((unsigned char)*p)) return false;
    int64_t v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        int digit = *p - '0';
        if (v > (INT64_MAX - digit) / 10) return false;
        v = v * 10 + digit;
    }
    if (strcmp(p, ".h5") != 0) return false;
    *step = v;
    return true;
}

typedef struct {
    int64_t step;
    char name[256];
} step_file;

/* The regular step-*.h5 files of dir, malloc'd in *files. */
static int scan_dir(const char *dir, step_file **files, int *n) {
    *files = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return ln_fail("%s: cannot open directory: %s", dir, strerror(errno));
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t step;
        struct stat sb;
        if (!parse_step_name(e->d_name, &step) || strlen(e->d_name) >= sizeof((step_file *)0)->name) continue;
        if (fstatat(dirfd(d), e->d_name, &sb, 0) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            step_file *grown = realloc(*files, (size_t)cap * sizeof *grown);
            if (!grown) {
                closedir(d);
                free(*files);
                *files = NULL;
                return ln_fail("%s: out of host memory", dir);
            }
            *files = grown;
        }
        (*files)[*n].step = step;
        snprintf((*files)[*n].name, sizeof (*files)[*n].name, "%s", e->d_name);
        (*n)++;
    }
    closedir(d);
    return LN_OK;
}

/* Newest first; the name breaks ties (step-1.h5 vs step-00000001.h5) so the order is stable. */
static int newest_first(const void *a, const void *b) {
    const step_file *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? 1 : -1;
    return -strcmp(x->name, y->name);
}

int ln_checkpoint_find_latest(const char *dir, char *path, size_t len) {
    step_file *files;
    int n;
    if (!dir) return ln_fail("checkpoint find: no directory");
    if (scan_dir(dir, &files, &n)) return LN_ERR;
    if (n == 0) {
        free(files);
        return ln_fail("no checkpoint in %s", dir);
    }
    qsort(files, (size_t)n, sizeof *files, newest_first);
    int w = snprintf(path, len, "%s/%s", dir, files[0].name);
    free(files);
    if (w < 0 || (size_t)w >= len) return ln_fail("%s: checkpoint path longer than %zu bytes", dir, len);
    return LN_OK;
}

int ln_checkpoint_prune(const char *dir, int keep) {
    if (!dir) return ln_fail("checkpoint prune: no directory");
    if (keep < 0) return ln_fail("%s: cannot keep %d checkpoints", dir, keep);
    if (keep == 0) return LN_OK;
    step_file *files;
    int n, st = LN_OK;
    if (scan_dir(dir, &files, &n)) return LN_ERR;
    qsort(files, (size_t)n, sizeof *files, newest_first);
    char path[4352];
    for (int i = keep; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        if (unlink(path) != 0 && errno != ENOENT && st == LN_OK)
            st = ln_fail("%s: cannot remove: %s", path, strerror(errno));
    }
    free(files);
    return st;
}
