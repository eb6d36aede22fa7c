/* Tiny helpers shared by the subcommands' argument parsing. */
#ifndef LN_ARGS_H
#define LN_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* Reports "linnet CMD: message" (message from linnet's last error unless given) and returns 1. */
int cli_error(const char *cmd, const char *message);
/* argv[*i] is `flag`: takes the next argument as its value (error when missing). */
bool cli_flag(int argc, char **argv, int *i, const char *flag, const char **value, int *status, const char *cmd);
bool cli_is_help(const char *arg);
/* "unknown option 'X' (see linnet CMD --help)"; returns 1. */
int cli_unknown_option(const char *cmd, const char *arg);
/* Parses a whole-string integer / number; false when malformed. */
bool cli_int(const char *s, int64_t *out);
bool cli_double(const char *s, double *out);

#endif
