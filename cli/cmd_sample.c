#include <stdio.h>
#include <string.h>

#include "autograd/error.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_io.h"
#include "recipes/train.h"

static const char help[] =
    "usage: linnet sample CHECKPOINT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
    "\n"
    "Continues the prompt (default: the recipe's sample.prompt) by N tokens and prints the text.\n"
    "Temperature 0 is greedy decoding; --top-k 0 samples from the whole vocabulary.\n";

int cmd_sample(int argc, char **argv) {
    const char *checkpoint = NULL, *prompt = NULL, *value;
    int64_t tokens = -1, top_k = -1, seed = 1;
    double temperature = -1;
    int status = 0;
    for (int i = 1; i < argc && !status; i++) {
        if (cli_is_help(argv[i])) {
            fputs(help, stdout);
            return 0;
        } else if (argv[i][0] != '-') {
            checkpoint = argv[i];
        } else if (cli_flag(argc, argv, &i, "--prompt", &prompt, &status, "sample")) {
        } else if (cli_flag(argc, argv, &i, "--tokens", &value, &status, "sample")) {
            if (!status && (!cli_int(value, &tokens) || tokens < 0)) status = cli_error("sample", "--tokens needs a count >= 0");
        } else if (cli_flag(argc, argv, &i, "--top-k", &value, &status, "sample")) {
            if (!status && (!cli_int(value, &top_k) || top_k < 0)) status = cli_error("sample", "--top-k needs a count >= 0");
        } else if (cli_flag(argc, argv, &i, "--seed", &value, &status, "sample")) {
            if (!status && !cli_int(value, &seed)) status = cli_error("sample", "--seed needs an integer");
        } else if (cli_flag(argc, argv, &i, "--temperature", &value, &status, "sample")) {
            if (!status && (!cli_double(value, &temperature) || temperature < 0))
                status = cli_error("sample", "--temperature needs a number >= 0");
        } else {
            status = cli_unknown_option("sample", argv[i]);
        }
    }
    if (status) return status;
    if (!checkpoint) return cli_error("sample", "no checkpoint given (see linnet sample --help)");
    ln_config cfg;
    ln_transformer model;
    if (cli_load_model(checkpoint, &cfg, &model)) return cli_error("sample", NULL);
    ln_tokenizer *tok = NULL;
    if (ln_tokenizer_open(&tok, cfg.data.tokenizer) ||
        ln_sample(&model, tok, prompt ? prompt : cfg.sample.prompt, tokens >= 0 ? (int)tokens : cfg.sample.tokens,
                  temperature >= 0 ? temperature : cfg.sample.temperature, top_k >= 0 ? (int)top_k : cfg.sample.top_k,
                  (uint64_t)seed, cfg.train.seq_len, stdout))
        status = cli_error("sample", NULL);
    ln_tokenizer_free(tok);
    ln_transformer_free(&model);
    return status;
}
