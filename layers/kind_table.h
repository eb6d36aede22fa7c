/* Lookup by name in a table of kinds (attention kinds, linear kinds): each row is a struct whose
 * first member is its name (const char *). */
#ifndef LN_KIND_TABLE_H
#define LN_KIND_TABLE_H

/* The row of rows[0, n) named `name`, or NULL with "unknown <what> 'name' (known: a, b, ...)". */
const void *ln_kind_find(const void *const *rows, int n, const char *name, const char *what);

#endif
