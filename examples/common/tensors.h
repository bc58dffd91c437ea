/* What the models' code shares: zeroed tensors for activations and
 * gradients, and the chaining of library calls in a forward or backward. */
#ifndef EX_TENSORS_H
#define EX_TENSORS_H

#include <stddef.h>
#include <stdlib.h>

#include <sigmareparam.h>

/* *p = a zeroed float buffer of n elements; 0 when out of memory. */
static inline int ex_alloc_floats(float **p, size_t n)
{
    *p = calloc(n, sizeof(float));
    return *p != NULL;
}

/* In a function returning srp_status: returns the call's status when it is
 * not SRP_OK. */
#define EX_TRY(call)                                                                               \
    do {                                                                                           \
        srp_status ex_try_st_ = (call);                                                            \
        if (ex_try_st_ != SRP_OK)                                                                  \
            return ex_try_st_;                                                                     \
    } while (0)

#endif
