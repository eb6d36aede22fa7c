#include "layers/kind_table.h"

#include <string.h>

#include "autograd/error.h"

/* a pointer to a struct points at its first member: the row's name */
static const char *name_of(const void *row) { return *(const char *const *)row; }

void ln_names_join(const char *const *names, int n, char *buf, size_t len) {
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        strncat(buf, i ? ", " : "", len - strlen(buf) - 1);
        strncat(buf, names[i], len - strlen(buf) - 1);
    }
}

const void *ln_kind_find(const void *const *rows, int n, const char *name, const char *what) {
    const char *names[64];
    int shown = n < 64 ? n : 64;
    for (int i = 0; i < n; i++)
        if (strcmp(name_of(rows[i]), name) == 0) return rows[i];
    for (int i = 0; i < shown; i++) names[i] = name_of(rows[i]);
    char known[256];
    ln_names_join(names, shown, known, sizeof known);
    ln_fail("unknown %s '%s' (known: %s)", what, name, known);
    return NULL;
}
