#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "recipes/train.h"

static const char help[] =
    "usage: linnet train [RECIPE.yaml] [--set key=value]... [--out DIR] [--resume auto|PATH]\n"
    "                    [--stop-at STEP] [--no-sample]\n"
    "\n"
    "Trains the model a recipe describes (without one: the built-in default, recipes/tiny.yaml).\n"
    "  --set key=value   override one recipe key (repeatable), e.g. --set optim.lr=1e-3\n"
    "  --out DIR         checkpoints, metrics.jsonl and recipe.yaml go here (default runs/<recipe>)\n"
    "  --resume auto     continue from the newest checkpoint in DIR (fresh if there is none)\n"
    "  --resume PATH     continue from that checkpoint\n"
    "  --stop-at STEP    stop after STEP (the learning-rate schedule still spans train.steps)\n"
    "  --no-sample       skip the sample printed at the end\n"
    "Data parallel: mpirun -np N linnet train ... (train.batch_size is the global batch).\n"
    "Keys and defaults: docs/recipes.md.\n";

int cmd_train(int argc, char **argv) {
    ln_comm comm;
    if (ln_comm_init(&comm, &argc, &argv)) return cli_error("train", NULL);
    ln_config cfg;
    ln_config_defaults(&cfg);
    const char *recipe = NULL, *resume = NULL, *value = NULL;
    char out_dir[LN_PATH_LEN] = "";
    ln_train_options opts = {.sample_at_end = true};
    int status = 0;
    /* the recipe first, so --set overrides it wherever each appears */
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-') {
            if (recipe) {
                status = cli_error("train", "more than one recipe given");
                goto done;
            }
            recipe = argv[i];
        } else if (!strcmp(argv[i], "--set") || !strcmp(argv[i], "--out") || !strcmp(argv[i], "--resume") ||
                   !strcmp(argv[i], "--stop-at")) {
            i++;
        }
    }
    if (recipe && ln_config_load_file(&cfg, recipe)) {
        status = cli_error("train", NULL);
        goto done;
    }
    for (int i = 1; i < argc && !status; i++) {
        if (cli_is_help(argv[i])) {
            fputs(help, stdout);
            goto done;
        } else if (argv[i][0] != '-') {
            continue;
        } else if (cli_flag(argc, argv, &i, "--set", &value, &status, "train")) {
            if (!status && ln_config_set(&cfg, value)) status = cli_error("train", NULL);
        } else if (cli_flag(argc, argv, &i, "--out", &value, &status, "train")) {
            snprintf(out_dir, sizeof out_dir, "%s", value);
        } else if (cli_flag(argc, argv, &i, "--resume", &resume, &status, "train")) {
        } else if (cli_flag(argc, argv, &i, "--stop-at", &value, &status, "train")) {
            if (!status && (!cli_int(value, &opts.stop_at) || opts.stop_at < 1))
                status = cli_error("train", "--stop-at needs a positive step number");
        } else if (!strcmp(argv[i], "--no-sample")) {
            opts.sample_at_end = false;
        } else {
            status = cli_unknown_option("train", argv[i]);
        }
    }
    if (status) goto done;
    if (ln_config_validate(&cfg)) {
        status = cli_error("train", NULL);
        goto done;
    }
    if (!out_dir[0]) {
        /* runs/<recipe file name without .yaml> */
        const char *base = recipe ? strrchr(recipe, '/') : NULL;
        base = base ? base + 1 : recipe ? recipe : "tiny.yaml";
        snprintf(out_dir, sizeof out_dir, "runs/%.*s", (int)strcspn(base, "."), base);
    }
    opts.out_dir = out_dir;
    opts.resume = resume;
    if (ln_train(&cfg, &opts, &comm)) {
        if (comm.size > 1) {
            char msg[1100];
            snprintf(msg, sizeof msg, "rank %d: %s", comm.rank, ln_error_message());
            cli_error("train", msg);
            fflush(stderr);
            ln_comm_abort(&comm, 1);
        }
        status = cli_error("train", NULL);
    }
done:
    ln_comm_finalize(&comm);
    return status;
}
