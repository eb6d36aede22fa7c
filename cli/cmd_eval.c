#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/error.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_io.h"
#include "recipes/train.h"

static const char help[] =
    "usage: linnet eval CHECKPOINT [--data DIR] [--split val|train] [--batches N]\n"
    "\n"
    "Mean next-token loss and perplexity of the checkpoint's model over the first N batches\n"
    "(train.batch_size sequences of train.seq_len tokens each) of a token-shard directory\n"
    "(default: the recipe's data.path, split val, eval.batches batches).\n";

int cmd_eval(int argc, char **argv) {
    const char *checkpoint = NULL, *data = NULL, *split = "val", *value;
    int64_t batches = 0;
    int status = 0;
    for (int i = 1; i < argc && !status; i++) {
        if (cli_is_help(argv[i])) {
            fputs(help, stdout);
            return 0;
        } else if (argv[i][0] != '-') {
            checkpoint = argv[i];
        } else if (cli_flag(argc, argv, &i, "--data", &data, &status, "eval")) {
        } else if (cli_flag(argc, argv, &i, "--split", &split, &status, "eval")) {
        } else if (cli_flag(argc, argv, &i, "--batches", &value, &status, "eval")) {
            if (!status && (!cli_int(value, &batches) || batches < 1)) status = cli_error("eval", "--batches needs a count >= 1");
        } else {
            status = cli_unknown_option("eval", argv[i]);
        }
    }
    if (status) return status;
    if (!checkpoint) return cli_error("eval", "no checkpoint given (see linnet eval --help)");
    ln_config cfg;
    ln_transformer model;
    if (cli_load_model(checkpoint, &cfg, &model)) return cli_error("eval", NULL);
    ln_comm comm = {.backend = LN_COMM_LOCAL, .rank = 0, .size = 1};
    ln_loader *loader = NULL;
    double loss = 0;
    int n = batches ? (int)batches : cfg.eval.batches;
    if (ln_loader_open(&loader, data ? data : cfg.data.path, split, cfg.train.seq_len, cfg.train.seed, false) ||
        ln_evaluate(&model, loader, n, cfg.train.batch_size, cfg.train.seq_len, &comm, &loss))
        status = cli_error("eval", NULL);
    else
        printf("loss %.4f | perplexity %.3f | %d batches of %d x %d tokens\n", loss, exp(loss), n, cfg.train.batch_size,
               cfg.train.seq_len);
    if (loader) ln_loader_close(loader);
    ln_transformer_free(&model);
    return status;
}
