/* Per-op time, for finding where a training step goes: with LINNET_PROFILE set (to anything but
 * "0"), every op's forward and backward is timed — by CUDA events on the stream for GPU nodes, by
 * the host clock for CPU nodes — and summed per (op, direction). The tape flushes the pending
 * GPU timings when it is cleared (once a step), so only that step pays a sync. */
#ifndef LN_PROFILE_H
#define LN_PROFILE_H

#include <stdbool.h>
#include <stdio.h>

#include "tape.h"

bool ln_profile_enabled(void);
/* Around one kernel call of node n; backward = false for the forward. */
void ln_profile_begin(const ln_node *n, bool backward);
void ln_profile_end(const ln_node *n, bool backward);
/* Folds the finished GPU timings into the totals (syncs the stream). */
void ln_profile_flush(void);
/* Drops the totals so far (e.g. the warm-up steps). */
void ln_profile_reset(void);
/* Table of totals, largest first, with each row's share; then clears the totals. */
void ln_profile_print(FILE *f, const char *title);

#endif
