/* linnet: train, prepare data, sample, evaluate, plot and run single ops. Each subcommand lives in cli/cmd_NAME.c. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static const struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"train", "train or fine-tune a model from a YAML recipe (mpirun for data parallel)", cmd_train},
    {"prep", "tokenize text files into zstd token shards", cmd_prep},
    {"sample", "generate text from a checkpoint", cmd_sample},
    {"eval", "mean loss and perplexity of a checkpoint on a data directory", cmd_eval},
    {"plot", "draw the loss, lr, tokens/s and grad norm curves of runs (metrics.jsonl) to a PNG or SVG", cmd_plot},
    {"op", "run one op on HDF5 inputs (outputs and gradients), to compare with other libraries", cmd_op},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static int usage(FILE *out) {
    fprintf(out, "usage: linnet <command> [options]   (linnet <command> --help for its options)\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nquick start:\n  linnet prep --tokenizer bytes --out data/kjv data/corpus/kjv.txt\n"
                 "  linnet train recipes/tiny.yaml --out runs/tiny\n"
                 "  linnet sample runs/tiny/step-00000300.h5 --prompt \"And God said\" --tokens 200\n"
                 "  linnet plot runs/tiny --out runs/tiny/plot.png\n");
    return out == stdout ? 0 : 2;
}

int main(int argc, char **argv) {
    /* The tape's arena frees and remakes the same large activations every step: keep them in the
     * heap instead of mmap/munmap each time (page faults were a third of CPU training time). */
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    if (argc < 2) return usage(stderr);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return usage(stdout);
    if (!strcmp(argv[1], "help")) {
        if (argc < 3) return usage(stdout);
        for (int i = 0; i < N_COMMANDS; i++)
            if (!strcmp(argv[2], commands[i].name)) return commands[i].run(2, (char *[]){argv[2], "--help", NULL});
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "linnet: unknown command '%s'\n", argv[argc > 2 && !strcmp(argv[1], "help") ? 2 : 1]);
    usage(stderr);
    return 2;
}
