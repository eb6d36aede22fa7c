/* Replacing a file so that a crash never leaves it half-written, whatever the format: the writer
 * fills "<path>.tmp", then ln_atomic_commit fsyncs it, renames it over path and fsyncs the
 * directory. Until the rename nothing at path is touched, so the last good file survives any
 * failure. Used by the checkpoint writers (checkpoints/h5_checkpoint.c) and `linnet plot`. */
#ifndef LN_ATOMIC_FILE_H
#define LN_ATOMIC_FILE_H

#include <stdbool.h>

typedef struct ln_atomic_file {
    const char *path; /* the file to replace (the caller's string, not copied) */
    char *tmp;        /* "<path>.tmp", malloc'd: the writer creates and fills it, then closes it */
} ln_atomic_file;

/* Names the temporary file; creates nothing. LN_ERR (out of memory) leaves nothing to release. */
int ln_atomic_begin(ln_atomic_file *f, const char *path);
/* For a closed, complete f->tmp: fsync, rename over f->path, fsync the directory. On a failure
 * before the rename f->tmp is removed and path is as it was. Releases f either way. */
int ln_atomic_commit(ln_atomic_file *f);
/* Gives up: removes f->tmp when the writer created it (`created`; a name it could not create may
 * be something else's) and releases f. */
void ln_atomic_abort(ln_atomic_file *f, bool created);

#endif
