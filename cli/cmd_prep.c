#include <stdio.h>
#include <string.h>

#include "autograd/error.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "data/prep.h"

static const char help[] =
    "usage: linnet prep --out DIR [--tokenizer bytes] [--val-fraction F] [--shard-tokens N] FILE...\n"
    "\n"
    "Tokenizes the text files (concatenated in the order given) into zstd-compressed token shards:\n"
    "DIR/train-NNNNN.lnshard and, from the last F of the tokens (default 0.05), DIR/val-NNNNN.lnshard,\n"
    "each at most N tokens (default 1048576). The format: docs/data-format.md.\n";

int cmd_prep(int argc, char **argv) {
    const char *out = NULL, *tokenizer = "bytes", *value;
    double val_fraction = 0.05;
    int64_t shard_tokens = 1 << 20;
    char *files[256];
    int n_files = 0, status = 0;
    for (int i = 1; i < argc && !status; i++) {
        if (cli_is_help(argv[i])) {
            fputs(help, stdout);
            return 0;
        } else if (argv[i][0] != '-') {
            if (n_files == 256) return cli_error("prep", "at most 256 input files");
            files[n_files++] = argv[i];
        } else if (cli_flag(argc, argv, &i, "--out", &out, &status, "prep")) {
        } else if (cli_flag(argc, argv, &i, "--tokenizer", &tokenizer, &status, "prep")) {
        } else if (cli_flag(argc, argv, &i, "--val-fraction", &value, &status, "prep")) {
            if (!status && (!cli_double(value, &val_fraction) || val_fraction < 0 || val_fraction >= 1))
                status = cli_error("prep", "--val-fraction needs a number in [0, 1)");
        } else if (cli_flag(argc, argv, &i, "--shard-tokens", &value, &status, "prep")) {
            if (!status && (!cli_int(value, &shard_tokens) || shard_tokens < 1))
                status = cli_error("prep", "--shard-tokens needs a positive count");
        } else {
            status = cli_unknown_option("prep", argv[i]);
        }
    }
    if (status) return status;
    if (!out) return cli_error("prep", "--out DIR is required (see linnet prep --help)");
    if (!n_files) return cli_error("prep", "no input files (see linnet prep --help)");
    ln_prep_summary s;
    if (ln_prep_ex(out, tokenizer, n_files, files, val_fraction, shard_tokens, &s)) return cli_error("prep", NULL);
    printf("prep: %lld tokens (vocab %d) -> %s: %d train shard%s (%lld tokens), %d val shard%s (%lld tokens)\n",
           (long long)s.tokens, s.vocab_size, out, s.train_shards, s.train_shards == 1 ? "" : "s",
           (long long)s.train_tokens, s.val_shards, s.val_shards == 1 ? "" : "s", (long long)s.val_tokens);
    return 0;
}
