#include "layers/kind_table.h"

#include <string.h>

#include "autograd/error.h"

/* a pointer to a struct points at its first member: the row's name */
static const char *name_of(const void *row) { return *(const char *const *)row; }

const void *ln_kind_find(const void *const *rows, int n, const char *name, const char *what) {
    for (int i = 0; i < n; i++)
        if (strcmp(name_of(rows[i]), name) == 0) return rows[i];
    char known[256] = "";
    for (int i = 0; i < n; i++) {
        strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
        strncat(known, name_of(rows[i]), sizeof known - strlen(known) - 1);
    }
    ln_fail("unknown %s '%s' (known: %s)", what, name, known);
    return NULL;
}
