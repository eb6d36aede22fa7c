#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char message[1024];

int ln_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return LN_ERR;
}

int ln_fail_context(const char *fmt, ...) {
    char prefix[256], old[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", message);
    snprintf(message, sizeof message, "%s: %s", prefix, old);
    return LN_ERR;
}

const char *ln_error_message(void) { return message[0] ? message : "unknown error"; }

void ln_error_clear(void) { message[0] = '\0'; }
