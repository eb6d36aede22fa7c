/* One function per `linnet` subcommand (cli/cmd_NAME.c). Each parses its own arguments, prints
 * "linnet NAME: <one-line error>" to stderr on failure and returns the process exit code. */
#ifndef LN_COMMANDS_H
#define LN_COMMANDS_H

int cmd_train(int argc, char **argv);
int cmd_prep(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_op(int argc, char **argv);
int cmd_plot(int argc, char **argv);

#endif
