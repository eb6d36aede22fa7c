/* Errors are values: functions return LN_OK or LN_ERR and leave a one-line message here.
 * Only the CLI prints it and exits. */
#ifndef LN_ERROR_H
#define LN_ERROR_H

#include <stdbool.h>

enum { LN_OK = 0, LN_ERR = -1 };

/* Sets the message (printf-style) and returns LN_ERR, so callers can `return ln_fail(...)`. */
int ln_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefixes the current message with context ("loading ckpt.h5: " + old message). */
int ln_fail_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *ln_error_message(void);
void ln_error_clear(void);

#endif
