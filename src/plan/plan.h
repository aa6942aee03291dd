/*
 * plan.h - internals of the cost model shared by plan.c and hw.c.
 */
#ifndef GK_PLAN_INTERNAL_H
#define GK_PLAN_INTERNAL_H

#include "grok.h"

/* FLOPs and weight bytes of one op in a forward over n_tok tokens with n_logits
 * kept logits and `touched` distinct experts per MoE layer. */
void gk_plan_op_work(const gk_plan_model *pm, const gk_plan_op *o, double n_tok, double n_logits,
                     double touched, double *flops, double *bytes);

#endif
