/* placement.h: which devices a model runs on and the plan of where its
 * modules go (placement.c), made from the geometry and lyra_model_params'
 * typed device fields (config/devspec.h parses strings into them).
 * Used by the load (fallback.c) and by `lyra plan` / `lyra devices`. */
#ifndef LYRA_RUNTIME_PLACEMENT_H
#define LYRA_RUNTIME_PLACEMENT_H

#include "arch/llama.h"
#include "device/device.h"
#include "lyra.h"
#include "plan/plan.h"

/* The devices a model runs on as bp says (NULL: from the environment): the
 * simulated GPUs of sim_gpus (when set, they replace CUDA; said at INFO) or
 * the CUDA GPUs of cuda_devices, then the CPU with the kernels of cpu_path,
 * fault injection armed from fail_alloc; n_threads for each (0 = physical
 * cores). gpu_asked (lyra_runtime_wants_gpu): CUDA's note that no GPU is
 * usable is a warning, else a debug line. On failure none is left. */
int lyra_runtime_devices(const lyra_backend_params *bp, int n_threads, int gpu_asked,
                         lyra_device **dev, int *n_dev, lyra_error *err);
/* 1 when p asks for a GPU: a cuda/cuda:N strategy, an explicit map, budget
 * or reserve naming a GPU, gpu_layers other than 0 and unset, or a
 * tensor_split. */
int lyra_runtime_wants_gpu(const lyra_model_params *p);
/* The geometry p asks for, defaults resolved (lyra_geometry_resolve; n_ctx
 * 0: min(the model's context_length, 4096)). */
lyra_geometry lyra_runtime_geometry(const lyra_llama *a, const lyra_model_params *p);
/* Plan a's modules on dev[n_dev] (lyra_runtime_devices' order) for geometry g
 * from p's typed device fields (never text); notes go to the log (WARN). */
int lyra_runtime_plan(const lyra_llama *a, const lyra_model_params *p, const lyra_geometry *g,
                      lyra_device *const *dev, int n_dev, struct lyra_plan **out, lyra_error *err);
/* The plan of a map the runtime chose (ids[i]: device id of module i, "disk"
 * for the disk tier) for n_ctx positions, with p's budgets; not checked
 * against them (the map is what really loaded). */
int lyra_runtime_plan_fixed(const lyra_llama *a, const lyra_model_params *p,
                            lyra_device *const *dev, int n_dev, const char *const *ids,
                            int32_t n_ctx, struct lyra_plan **out, lyra_error *err);
/* The same for this rank's share of module_rank (the split; NULL: as above). */
int lyra_runtime_plan_fixed_ranked(const lyra_llama *a, const lyra_model_params *p,
                                   lyra_device *const *dev, int n_dev, const char *const *ids,
                                   int32_t n_ctx, const int *module_rank, struct lyra_plan **out,
                                   lyra_error *err);
/* lyra_runtime_plan of this rank's share of module_rank (the split). */
int lyra_runtime_plan_ranked(const lyra_llama *a, const lyra_model_params *p, const lyra_geometry *g,
                             lyra_device *const *dev, int n_dev, const int *module_rank,
                             struct lyra_plan **out, lyra_error *err);
/* Rank `rank`'s devices for the planner: pd[n] (its GPUs and CPU) and the
 * disk, budgets from p's max_memory / reserve entries for that rank (notes
 * returned). */
int lyra_runtime_rank_devices(const lyra_model_params *p, int rank, const lyra_plan_device *pd, int n,
                              lyra_plan_rank *out, lyra_plan_notes *notes, lyra_error *err);
/* The plan of rank `rank`'s share (module_rank; NULL: the even split or the
 * map's under mpirun, else the whole model) on its devices rd, from p as
 * given (localized here); fixed as lyra_runtime_plan_fixed. Notes stay in
 * the plan. */
int lyra_runtime_plan_share(const lyra_llama *a, const lyra_model_params *p, const lyra_geometry *g,
                            const lyra_plan_rank *rd, int rank, const int *module_rank,
                            const char *const *fixed, struct lyra_plan **out, lyra_error *err);

/* The rank of each module of a over n_ranks MPI ranks (docs/distributed.md):
 * with an explicit device map naming ranks ("0@1", "cpu@2"), each module's
 * entry's rank (an entry without one: rank 0); else layers split in
 * consecutive, even shares (rank r runs layers [r*L/n, (r+1)*L/n)), the
 * embedding with rank 0, the norm and the head with the last rank. More ranks
 * than layers, or a device of a rank >= n_ranks, is LYRA_ERR_INPUT. */
int lyra_runtime_ranks(const lyra_llama *a, const lyra_model_params *p, int n_ranks, int *module_rank,
                       lyra_error *err);
/* lyra_runtime_ranks knowing every rank's devices (ranks[n_ranks]; NULL: as
 * lyra_runtime_ranks): without ranks in the map, when some rank has a GPU and
 * p's strategy fills devices (auto, balanced, balanced_low_0, sequential; no
 * gpu_layers, no tensor_split), lyra_plan_ranks splits by the devices (GPUs
 * first, docs/distributed.md); else the even split. */
int lyra_runtime_split(const lyra_llama *a, const lyra_model_params *p, const lyra_plan_rank *ranks,
                       int n_ranks, int *module_rank, lyra_error *err);
/* --fallback-across-ranks at planning: for rank r = 0, 1, ... (but the
 * last), while r's share cannot be planned on its devices ranks[r], its last
 * layer moves to rank r + 1 (a warning says so); r keeps at least one layer
 * (its own plan then says why it fails). */
int lyra_runtime_hand_on(const lyra_llama *a, const lyra_model_params *p, const lyra_plan_rank *ranks,
                         int n_ranks, int *module_rank, lyra_error *err);
/* Rank r's last module when it is a layer and r keeps another layer, else -1. */
int lyra_runtime_last_layer(const lyra_llama *a, int r, const int *module_rank);
/* Move rank r's last module, a layer, to rank r + 1 when r keeps a layer
 * (its name in moved); 0 when it cannot. */
int lyra_runtime_move_last(const lyra_llama *a, int r, int *module_rank, char *moved, size_t cap);
/* Under mpirun, every rank (collective): report this rank's devices dev[n_dev]
 * with its budgets to rank 0, which splits the model (lyra_runtime_split)
 * and sends module_rank[n_modules] to every rank. all (rank 0, may be NULL):
 * receives every rank's devices [lyra_dist_size()]. A failure on rank 0 fails
 * every rank (rank 0 says why). */
int lyra_runtime_cluster(const lyra_llama *a, const lyra_model_params *p, lyra_device *const *dev, int n_dev,
                         int *module_rank, lyra_plan_rank *all, lyra_error *err);
/* The highest rank p's device map, max_memory or reserve names, or -1. */
int lyra_runtime_named_rank(const lyra_model_params *p);
/* p as rank `rank` plans it: map entries of that rank (and, on rank 0, those
 * without a rank) on their local device, the other ranks' on the CPU (their
 * modules cost nothing there), max_memory / reserve entries of other ranks
 * dropped. *mem (free() it) holds lp's arrays; p unchanged when it names no
 * rank. */
int lyra_runtime_localize(const lyra_model_params *p, int rank, lyra_model_params *lp, void **mem,
                          lyra_error *err);

#endif
