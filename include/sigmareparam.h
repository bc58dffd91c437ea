/*
 * libsigmareparam: sigmaReparam for transformer training in C.
 *
 * Every linear weight is used as W_hat = (gamma / sigma(W)) * W, where
 * sigma(W), the spectral norm, is tracked by one power-iteration step per
 * training forward and gamma is a learned scalar (Zhai et al., "Stabilizing
 * Transformer Training by Preventing Attention Entropy Collapse", ICML 2023;
 * semantics of apple/ml-sigma-reparam, vision/layers.py). Attention tracks
 * its per-head entropy and the paper's lower bound on it.
 *
 * Conventions, everywhere in this header:
 *  - every fallible call returns srp_status; the library never aborts,
 *    exits or prints, and a failed call leaves its object as it was;
 *  - arrays are row-major float32, sizes are size_t;
 *  - activations (x, y, dy, dx) belong to the caller; layers own their
 *    parameters, gradients, optimizer-visible state and workspaces;
 *  - parameter gradients accumulate (+=); input gradients are overwritten;
 *  - handles come in create/destroy pairs and destroy(NULL) does nothing;
 *  - forward and backward allocate nothing; all memory is taken at create.
 */
#ifndef SIGMAREPARAM_H
#define SIGMAREPARAM_H

/* One header for users; the parts below are grouped by concept. */
#include "sigmareparam/attention.h"  /* srp_attention: multi-head attention + entropy */
#include "sigmareparam/block.h"      /* srp_block: a transformer block (attention + MLP) */
#include "sigmareparam/embedding.h"  /* srp_embedding: token lookup, tied output head */
#include "sigmareparam/checkpoint.h" /* crash-safe named-tensor files */
#include "sigmareparam/collapse.h"   /* srp_collapse: the entropy-collapse watch */
#include "sigmareparam/conv2d.h"     /* srp_conv2d: the sigmaReparam 2-D convolution */
#include "sigmareparam/core.h"       /* version, SRP_API, srp_status, threads */
#include "sigmareparam/dist.h"       /* srp_dist: data-parallel training (MPI: dist_mpi.h) */
#include "sigmareparam/layernorm.h"  /* srp_layernorm: the LayerNorm layer object */
#include "sigmareparam/linear.h"     /* srp_linear: the sigmaReparam linear layer */
#include "sigmareparam/lists.h"      /* a model's parameter list and state-tensor list */
#include "sigmareparam/nn.h"         /* LayerNorm, GELU, losses, small helpers */
#include "sigmareparam/optim.h"      /* parameter lists, SGD, LARS, AdamW, schedules */
#ifdef SRP_UNSTABLE_API
#include "sigmareparam/profile.h" /* where the time goes; its parts change between versions */
#endif
#include "sigmareparam/rng.h"        /* srp_rng: seeded, machine-independent */
#include "sigmareparam/safetensors.h" /* safetensors files: models to and from PyTorch */
#include "sigmareparam/spectral.h"   /* exact sigma, srp_power_iter */
#include "sigmareparam/weight_average.h" /* the sigma-aware weight average (EMA) */

#endif /* SIGMAREPARAM_H */
