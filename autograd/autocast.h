/* Mixed precision in the manner of torch.autocast: while a compute dtype is set, layers read
 * every weight through ln_weight, which casts the fp32 master copy to that dtype on the tape, so
 * activations flow in bf16 while gradients still reach the fp32 masters. */
#ifndef LN_AUTOCAST_H
#define LN_AUTOCAST_H

#include "autograd/ops.h"

/* LN_F32 turns it off (the default). Returns the previous setting. */
ln_dtype ln_set_autocast(ln_dtype dtype);
ln_dtype ln_autocast(void);
/* w in the compute dtype (w itself when autocast is off). */
ln_tensor *ln_weight(ln_tensor *w);

#endif
