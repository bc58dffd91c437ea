/* Data-parallel training over MPI: the srp_dist of several processes.
 * Only in builds configured with SRP_WITH_MPI=ON; it includes <mpi.h>, so
 * it is not part of <sigmareparam.h>: include it next to that. Everything
 * but this create is in <sigmareparam/dist.h>, which says how a step goes
 * and what each call does. */
#ifndef SIGMAREPARAM_DIST_MPI_H
#define SIGMAREPARAM_DIST_MPI_H

#include <mpi.h>

#include "sigmareparam/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Collective over comm (after MPI_Init). params, linears: as for
 * srp_dist_create_single; both must describe the same shapes on every
 * rank: SRP_ERR_SHAPE on every rank when they do not. Call
 * srp_set_num_threads first: the thread count is part of the numerics
 * compared across ranks. Errors: those of srp_dist_create_single, INT_MAX
 * floats of gradients or more (one allreduce's count;
 * SRP_ERR_UNSUPPORTED), an MPI failure (SRP_ERR_PEER); on any error every
 * rank returns an error and *out stays NULL. */
SRP_API srp_status srp_dist_create(srp_dist **out, MPI_Comm comm, const srp_param *params,
                                   size_t nparams, srp_linear *const *linears, size_t nlinears);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_DIST_MPI_H */
