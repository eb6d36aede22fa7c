/* The temporary file + fsync + rename + directory fsync of an atomic file replacement
 * (atomic_file.h); format-independent, so every checkpoint writer shares it. */
#include "checkpoints/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/error.h"

static int fsync_path(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    /* Some filesystems cannot fsync a directory; the rename is then as durable as they allow. */
    if (rc != 0 && (flags & O_DIRECTORY) && (errno == EINVAL || errno == ENOTSUP)) rc = 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int ln_atomic_begin(ln_atomic_file *f, const char *path) {
    size_t n = strlen(path);
    f->path = path;
    f->tmp = malloc(n + 5);
    if (!f->tmp) return ln_fail("%s: out of host memory", path);
    snprintf(f->tmp, n + 5, "%s.tmp", path);
    return LN_OK;
}

void ln_atomic_abort(ln_atomic_file *f, bool created) {
    if (created) unlink(f->tmp);
    free(f->tmp);
    f->tmp = NULL;
}

int ln_atomic_commit(ln_atomic_file *f) {
    const char *path = f->path;
    int st = LN_OK;
    if (fsync_path(f->tmp, O_RDONLY) != 0)
        st = ln_fail("%s: cannot fsync %s: %s", path, f->tmp, strerror(errno));
    if (st == LN_OK && rename(f->tmp, path) != 0)
        st = ln_fail("%s: cannot rename %s into place: %s", path, f->tmp, strerror(errno));
    ln_atomic_abort(f, st != LN_OK); /* after a rename there is no f->tmp left to remove */
    if (st != LN_OK) return LN_ERR;

    /* The rename itself lives in the directory: sync it so the new name survives a power cut. */
    char *dir = strdup(path);
    if (!dir) return ln_fail("%s: out of host memory", path);
    char *slash = strrchr(dir, '/');
    const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
    if (fsync_path(d, O_RDONLY | O_DIRECTORY) != 0)
        st = ln_fail("%s: written, but cannot fsync directory %s: %s", path, d, strerror(errno));
    free(dir);
    return st;
}
