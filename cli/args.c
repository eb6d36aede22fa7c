#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"

int cli_error(const char *cmd, const char *message) {
    fprintf(stderr, "linnet %s: %s\n", cmd, message ? message : ln_error_message());
    return 1;
}

bool cli_flag(int argc, char **argv, int *i, const char *flag, const char **value, int *status, const char *cmd) {
    if (strcmp(argv[*i], flag) != 0) return false;
    if (*i + 1 >= argc) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s needs a value", flag);
        *status = cli_error(cmd, msg);
        return true;
    }
    *value = argv[++*i];
    return true;
}

bool cli_is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

bool cli_int(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

bool cli_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

int cli_unknown_option(const char *cmd, const char *arg) {
    char msg[512];
    snprintf(msg, sizeof msg, "unknown option '%s' (see linnet %s --help)", arg, cmd);
    return cli_error(cmd, msg);
}
