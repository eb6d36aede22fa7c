/* Lookup by name in a table of kinds (attention kinds, linear kinds): each row is a struct whose
 * first member is its name (const char *). */
#ifndef LN_KIND_TABLE_H
#define LN_KIND_TABLE_H

#include <stddef.h>

/* names[0, n) as "a, b, c" into buf (cut at len), for the "known: ..." of a message. */
void ln_names_join(const char *const *names, int n, char *buf, size_t len);
/* The row of rows[0, n) named `name`, or NULL with "unknown <what> 'name' (known: a, b, ...)". */
const void *ln_kind_find(const void *const *rows, int n, const char *name, const char *what);

#endif
