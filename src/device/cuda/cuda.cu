/* cuda.cu: the CUDA device (cuda.h): enumeration (LYRA_CUDA_DEVICES),
 * memory (cudaMalloc under the device's budget, failures returned as
 * LYRA_ERR_OOM), copies through pinned staging on the device's stream, sync
 * reporting deferred failures, work memory (shared with cuBLAS as its
 * workspace), and the ops table. The kernels are cuda_matvec.cu (matmul) and
 * cuda_ops.cu (everything else).
 *
 * Each lyra device owns one CUDA stream; every copy and kernel is queued on
 * it in the order the runtime calls, so ops need no synchronisation between
 * them. copy_in returns once the source may be reused (the bytes are in the
 * staging buffer or DMA'd), copy_out once the destination holds the data. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.cuh"

/* ------------------------------------------------------------------ errors */

void lc_fail(lyra_device *d, const char *fmt, ...) {
    lc_dev *c = LC(d);
    if (c->failed) return;
    c->failed = LYRA_ERR_RUNTIME;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->failed_msg, sizeof c->failed_msg, fmt, ap);
    va_end(ap);
}

int lc_ok(lyra_device *d, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 1;
    (void)cudaGetLastError(); /* clear a non-sticky error */
    lc_fail(d, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return 0;
}

int lc_launched(lyra_device *d, const char *what) { return lc_ok(d, cudaGetLastError(), what); }

int lc_blas_ok(lyra_device *d, cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return 1;
    lc_fail(d, "%s: %s (%s)", what, lc_blas.status_string(s), lc_blas.status_name(s));
    return 0;
}

int lc_use(lyra_device *d) { return lc_ok(d, cudaSetDevice(LC(d)->ordinal), "cudaSetDevice"); }

/* ------------------------------------------------------------------ memory */

extern "C" {

static int cuda_alloc(lyra_device *d, size_t size, void **ptr) {
    *ptr = NULL;
    d->stats.alloc_calls++;
    uint64_t held = d->stats.allocated;
    if (d->budget && ((uint64_t)size > d->budget || held > d->budget - (uint64_t)size))
        return LYRA_ERR_OOM;
    if (!lc_use(d)) return LYRA_ERR_OOM;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, size ? size : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is not sticky: clear it */
        if (e != cudaErrorMemoryAllocation) lc_ok(d, e, "cudaMalloc");
        return LYRA_ERR_OOM;
    }
    d->stats.allocated += size;
    if (d->stats.allocated > d->stats.peak) d->stats.peak = d->stats.allocated;
    *ptr = p;
    return LYRA_OK;
}

static void cuda_free(lyra_device *d, void *ptr, size_t size) {
    if (!ptr) return;
    if (lc_use(d)) lc_ok(d, cudaFree(ptr), "cudaFree");
    d->stats.allocated -= size <= d->stats.allocated ? size : d->stats.allocated;
}

static int cuda_adopt(lyra_device *d, const void *ptr, size_t size) {
    (void)d; (void)ptr; (void)size;
    return LYRA_ERR_RUNTIME; /* a GPU cannot use host memory in place */
}

static void cuda_unadopt(lyra_device *d, const void *ptr, size_t size) {
    (void)d; (void)ptr; (void)size;
}

/* Pageable fallback (no staging): cudaMemcpyAsync from pageable memory
 * returns once the source has been consumed; to pageable memory it needs the
 * stream synchronised before the bytes are there. */
static int copy_pageable(lyra_device *d, void *dst, const void *src, size_t n, int in) {
    lc_dev *c = LC(d);
    if (!lc_ok(d, cudaMemcpyAsync(dst, src, n, in ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                  c->stream),
               in ? "copy to the GPU" : "copy from the GPU"))
        return LYRA_ERR_RUNTIME;
    if (!in && !lc_ok(d, cudaStreamSynchronize(c->stream), "copy from the GPU"))
        return LYRA_ERR_RUNTIME;
    return LYRA_OK;
}

/* Host -> device in chunks through the two staging halves: while the GPU
 * copies one half, the host fills the other. Returns with copies queued; a
 * half is reused only after its last copy completed (its event). */
static int cuda_copy_in(lyra_device *d, void *dst, const void *host_src, size_t n) {
    lc_dev *c = LC(d);
    if (!n) return LYRA_OK;
    if (!lc_use(d)) return LYRA_ERR_RUNTIME;
    if (!c->stage) return copy_pageable(d, dst, host_src, n, 1);
    for (size_t off = 0; off < n; off += LC_STAGE_HALF) {
        size_t len = n - off < LC_STAGE_HALF ? n - off : LC_STAGE_HALF;
        int h = c->stage_next;
        c->stage_next ^= 1;
        uint8_t *buf = c->stage + (size_t)h * LC_STAGE_HALF;
        if (!lc_ok(d, cudaEventSynchronize(c->stage_ev[h]), "copy to the GPU (staging)"))
            return LYRA_ERR_RUNTIME;
        memcpy(buf, (const uint8_t *)host_src + off, len);
        if (!lc_ok(d, cudaMemcpyAsync((uint8_t *)dst + off, buf, len, cudaMemcpyHostToDevice,
                                      c->stream),
                   "copy to the GPU") ||
            !lc_ok(d, cudaEventRecord(c->stage_ev[h], c->stream), "copy to the GPU (event)"))
            return LYRA_ERR_RUNTIME;
    }
    return LYRA_OK;
}

/* Device -> host: each chunk lands in a staging half, the stream is
 * synchronised (so all earlier work is done too), then it is copied out. */
static int cuda_copy_out(lyra_device *d, void *host_dst, const void *src, size_t n) {
    lc_dev *c = LC(d);
    if (!n) return LYRA_OK;
    if (!lc_use(d)) return LYRA_ERR_RUNTIME;
    if (!c->stage) return copy_pageable(d, host_dst, src, n, 0);
    for (size_t off = 0; off < n; off += LC_STAGE_HALF) {
        size_t len = n - off < LC_STAGE_HALF ? n - off : LC_STAGE_HALF;
        int h = c->stage_next;
        c->stage_next ^= 1;
        uint8_t *buf = c->stage + (size_t)h * LC_STAGE_HALF;
        if (!lc_ok(d, cudaMemcpyAsync(buf, (const uint8_t *)src + off, len, cudaMemcpyDeviceToHost,
                                      c->stream),
                   "copy from the GPU") ||
            !lc_ok(d, cudaStreamSynchronize(c->stream), "copy from the GPU"))
            return LYRA_ERR_RUNTIME;
        memcpy((uint8_t *)host_dst + off, buf, len);
    }
    return LYRA_OK;
}

static int cuda_sync(lyra_device *d, lyra_error *err) {
    lc_dev *c = LC(d);
    if (lc_use(d)) lc_ok(d, cudaStreamSynchronize(c->stream), "GPU work");
    if (!c->failed) return LYRA_OK;
    int code = c->failed;
    c->failed = 0;
    char where[48];
    snprintf(where, sizeof where, "gpu %s (cuda)", d->id);
    return lyra_err(err, code, where, "%s", c->failed_msg);
}

static uint64_t cuda_free_mem(const lyra_device *d) {
    size_t f = 0, t = 0;
    if (cudaSetDevice(LC(d)->ordinal) != cudaSuccess || cudaMemGetInfo(&f, &t) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    /* a card shared by several lyra devices: each has its part of the memory */
    uint64_t share = d->total > d->stats.allocated ? d->total - d->stats.allocated : 0;
    return (uint64_t)f < share ? (uint64_t)f : share;
}

/* --------------------------------------------------------------- work memory */

/* The work memory is matmul's (cuda_matvec.cu), used from its first 256-byte
 * boundary; its first blas_ws bytes are cuBLAS's workspace when it is that
 * large (the GEMM path sizes it so), else cuBLAS gets none. Work memory is used by one op at a time, in stream
 * order, so the two uses never overlap in time. */
static void cuda_set_work(lyra_device *d, void *work, size_t size) {
    lc_dev *c = LC(d);
    /* the runtime's work memory may be only 64-byte aligned (it is carved
     * from the scratch); cuBLAS wants 256: lc_matmul_work_size adds the slack */
    size_t pad = work ? (size_t)(-(uintptr_t)work & 255) : 0;
    uint8_t *w = work && size > pad ? (uint8_t *)work + pad : NULL;
    size = w ? size - pad : 0;
    int use_ws = w && size >= c->blas_ws;
    if (w == c->work && size == c->work_size && use_ws == c->blas_ws_set) return;
    c->work = w;
    c->work_size = size;
    c->blas_ws_set = 0;
    if (!lc_use(d)) return;
    if (!use_ws) { /* no GEMM will run: cuBLAS needs no workspace */
        (void)lc_blas.set_workspace(c->blas, NULL, 0);
        return;
    }
    if (lc_blas_ok(d, lc_blas.set_workspace(c->blas, w, c->blas_ws), "cublasSetWorkspace"))
        c->blas_ws_set = 1;
}

/* ------------------------------------------------------------------ device */

static void cuda_destroy(lyra_device *d) {
    lc_dev *c = LC(d);
    if (c) {
        if (cudaSetDevice(c->ordinal) == cudaSuccess) {
            if (c->stream) (void)cudaStreamSynchronize(c->stream);
            if (c->blas) (void)lc_blas.destroy(c->blas);
            for (int i = 0; i < 2; i++)
                if (c->stage_ev[i]) (void)cudaEventDestroy(c->stage_ev[i]);
            if (c->stream) (void)cudaStreamDestroy(c->stream);
            if (c->stage) (void)cudaFreeHost(c->stage);
        }
        (void)cudaGetLastError();
        free(c);
    }
    free(d);
}

} /* extern "C" */

static lyra_device_ops make_ops(void) {
    lyra_device_ops o;
    memset(&o, 0, sizeof o);
    o.alloc = cuda_alloc;
    o.free = cuda_free;
    o.adopt = cuda_adopt;
    o.unadopt = cuda_unadopt;
    o.copy_in = cuda_copy_in;
    o.copy_out = cuda_copy_out;
    o.sync = cuda_sync;
    o.get_rows = lc_get_rows;
    o.rmsnorm = lc_rmsnorm;
    o.matmul = lc_matmul;
    o.rope = lc_rope;
    o.kv_store = lc_kv_store;
    o.attention = lc_attention;
    o.swiglu = lc_swiglu;
    o.add = lc_add;
    o.layernorm = lc_layernorm;
    o.add_bias = lc_add_bias;
    o.gelu = lc_gelu_op;
    o.geglu = lc_geglu;
    o.scale = lc_scale;
    o.softcap = lc_softcap_op;
    o.matmul_work_size = lc_matmul_work_size;
    o.set_work = cuda_set_work;
    o.destroy = cuda_destroy;
    o.free_mem = cuda_free_mem;
    o.matmul_multi = lc_matmul_multi;
    /* kv_to_rows / kv_from_rows stay NULL: the cache chunks are rows */
    return o;
}

static const lyra_device_ops cuda_ops = make_ops();

/* A reason for a failed CUDA call, in words. */
static void reason(cudaError_t e, const char *what, char *why, size_t cap) {
    if (e == cudaErrorNoDevice)
        snprintf(why, cap, "no CUDA device");
    else if (e == cudaErrorInsufficientDriver)
        snprintf(why, cap, "no NVIDIA driver, or one too old for CUDA %d.%d", CUDART_VERSION / 1000,
                 CUDART_VERSION % 1000 / 10);
    else
        snprintf(why, cap, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* The decode matmul kernel LYRA_CUDA_MATVEC asks for (a diagnostic,
 * docs/gpu.md): v1, v2 (the default; unset or empty: v2; the fastest on
 * the H200, 2026-12-04) or v3. */
static int mv_kernel_from_env(int index) {
    const char *e = getenv("LYRA_CUDA_MATVEC");
    if (!e || !*e) return 2;
    for (int k = 1; k <= 3; k++) {
        char name[4];
        snprintf(name, sizeof name, "v%d", k);
        if (!strcmp(e, name) || (e[0] == '0' + k && !e[1])) return k;
    }
    LYRA_WARN("CUDA GPU %d: LYRA_CUDA_MATVEC=%.40s is not v1, v2 or v3; using v2", index, e);
    return 2;
}

/* Lyra device number index (id) on card ordinal, part `part` of `parts`.
 * LYRA_OK, or the failure in why (nothing left behind). */
static int device_new(int index, int ordinal, int part, int parts, lyra_device **out, char *why,
                      size_t cap) {
    *out = NULL;
    lyra_device *d = (lyra_device *)calloc(1, sizeof *d);
    lc_dev *c = (lc_dev *)calloc(1, sizeof *c);
    if (!d || !c) {
        free(d);
        free(c);
        snprintf(why, cap, "out of host memory");
        return LYRA_ERR_OOM;
    }
    d->impl = c;
    d->ops = &cuda_ops;
    c->ordinal = ordinal;
    c->part = part;
    c->parts = parts;
    cudaDeviceProp prop;
    size_t f = 0, t = 0;
    cudaError_t e;
    const char *what = "cudaSetDevice";
    if ((e = cudaSetDevice(ordinal)) != cudaSuccess) goto fail;
    what = "cudaGetDeviceProperties";
    if ((e = cudaGetDeviceProperties(&prop, ordinal)) != cudaSuccess) goto fail;
    what = "cudaStreamCreate";
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) goto fail;
    what = "cudaEventCreate";
    for (int i = 0; i < 2; i++)
        if ((e = cudaEventCreateWithFlags(&c->stage_ev[i], cudaEventDisableTiming)) != cudaSuccess)
            goto fail;
    what = "cudaMemGetInfo";
    if ((e = cudaMemGetInfo(&f, &t)) != cudaSuccess) goto fail;
    {
        /* cuBLAS on our stream, with no workspace until set_work gives one
         * (cublasSetStream resets the workspace, so it comes first) */
        if (lc_blas_load(why, cap)) {
            (void)cudaGetLastError();
            cuda_destroy(d);
            return LYRA_ERR_RUNTIME;
        }
        cublasStatus_t s = lc_blas.create(&c->blas);
        if (s == CUBLAS_STATUS_SUCCESS) s = lc_blas.set_stream(c->blas, c->stream);
        /* (a cuBLAS that refused "no workspace" would keep its own pool:
         * not worth losing the GPU for) */
        if (s == CUBLAS_STATUS_SUCCESS) (void)lc_blas.set_workspace(c->blas, NULL, 0);
        if (s != CUBLAS_STATUS_SUCCESS) {
            snprintf(why, cap, "cuBLAS: %s", lc_blas.status_string(s));
            (void)cudaGetLastError();
            cuda_destroy(d);
            return LYRA_ERR_RUNTIME;
        }
    }
    c->cc = prop.major * 10 + prop.minor;
    c->mv_kernel = mv_kernel_from_env(index);
    /* cuBLAS's recommended workspace: 32 MiB on Hopper and later, else 4 MiB */
    c->blas_ws = (size_t)(c->cc >= 90 ? 32 : 4) << 20;
    if (cudaHostAlloc((void **)&c->stage, 2 * LC_STAGE_HALF, cudaHostAllocPortable) != cudaSuccess) {
        cudaError_t he = cudaGetLastError();
        c->stage = NULL;
        LYRA_WARN("CUDA GPU %d: no pinned staging memory (%s); copies to and from it use "
                  "pageable memory (slower)", index, cudaGetErrorString(he));
    }
    snprintf(d->id, sizeof d->id, "%d", index);
    snprintf(d->kind, sizeof d->kind, "gpu");
    snprintf(d->backend, sizeof d->backend, "cuda");
    {
        char name[160];
        if (parts > 1)
            snprintf(name, sizeof name, "%.80s (card %d, part %d/%d)", prop.name, ordinal, part + 1,
                     parts);
        else
            snprintf(name, sizeof name, "%.80s (card %d)", prop.name, ordinal);
        snprintf(d->name, sizeof d->name, "%.63s", name);
    }
    d->total = (uint64_t)t / (uint64_t)parts;
    *out = d;
    return LYRA_OK;
fail:
    reason(e, what, why, cap);
    (void)cudaGetLastError();
    cuda_destroy(d);
    return e == cudaErrorMemoryAllocation ? LYRA_ERR_OOM : LYRA_ERR_RUNTIME;
}

/* ---- cuBLAS by dlopen (cuda_impl.cuh) ---- */
lc_blas_api lc_blas;
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;
static char g_blas_why[256]; /* "" once loaded */

#define LC_STR_(x) #x
#define LC_STR(x) LC_STR_(x) /* the exported name behind cublas_v2.h's macro */

static void blas_load_once(void) {
    /* the soname first (the loader's search path), then the toolkit lyra was
     * built with */
    void *h = dlopen(LYRA_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen(LYRA_CUBLAS_DIR "/" LYRA_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(g_blas_why, sizeof g_blas_why, "cuBLAS: cannot load %s (%.180s)", LYRA_CUBLAS_SONAME,
                 e ? e : "not found");
        return;
    }
    const char *missing = NULL;
#define LC_SYM(field, fn)                                                    \
    if (!(*(void **)&lc_blas.field = dlsym(h, LC_STR(fn))) && !missing) missing = LC_STR(fn)
    LC_SYM(create, cublasCreate);
    LC_SYM(destroy, cublasDestroy);
    LC_SYM(set_stream, cublasSetStream);
    LC_SYM(set_workspace, cublasSetWorkspace);
    LC_SYM(gemm_ex, cublasGemmEx);
    LC_SYM(status_string, cublasGetStatusString);
    LC_SYM(status_name, cublasGetStatusName);
#undef LC_SYM
    if (missing) snprintf(g_blas_why, sizeof g_blas_why, "cuBLAS: %s lacks %s", LYRA_CUBLAS_SONAME, missing);
}

int lc_blas_load(char *why, size_t cap) {
    pthread_once(&g_blas_once, blas_load_once);
    if (!g_blas_why[0]) return 0;
    if (why && cap) snprintf(why, cap, "%.190s", g_blas_why);
    return -1;
}

/* One note per process when CUDA GPUs are missing or unusable: a warning
 * when the user asked for a GPU, else a debug line (-v); each level once. */
static int g_noted[2];

static void note_once(int asked, const char *fmt, const char *why) {
    if (__atomic_exchange_n(&g_noted[asked != 0], 1, __ATOMIC_RELAXED)) return;
    lyra_log(asked ? LYRA_LOG_WARN : LYRA_LOG_DEBUG, fmt, why);
}

extern "C" {

int lyra_cuda_count(char *why, size_t why_cap) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (why && why_cap) reason(e, "cudaGetDeviceCount", why, why_cap);
        return 0;
    }
    if (n <= 0) {
        if (why && why_cap) snprintf(why, why_cap, "no CUDA device");
        return 0;
    }
    return n;
}

int lyra_cuda_available(void) { return lyra_cuda_count(NULL, 0) > 0; }

int lyra_device_is_cuda(const lyra_device *d) { return d && lyra_device_own_ops(d) == &cuda_ops; }

int lyra_cuda_devices_open(const char *env, int asked, int n_threads, lyra_device **out, int max,
                           int *n, lyra_error *err) {
    (void)n_threads;
    *n = 0;
    if (env && !env[0]) return LYRA_OK; /* every GPU hidden on purpose */
    char why[256];
    int cards = lyra_cuda_count(why, sizeof why);
    if (cards == 0) {
        note_once(asked, "CUDA: no usable GPU (%s); running on the CPU", why);
        return LYRA_OK;
    }
    int ord[LYRA_CUDA_MAX_DEVICES], k = 0;
    int cap = max < LYRA_CUDA_MAX_DEVICES ? max : LYRA_CUDA_MAX_DEVICES;
    if (env) {
        int rc = lyra_cuda_parse_devices(env, cards, ord, cap, &k, err);
        if (rc) return rc;
    } else {
        for (k = 0; k < cards && k < cap; k++) ord[k] = k;
    }
    int created = 0, rc = LYRA_OK;
    char first_why[256] = "";
    for (int i = 0; i < k; i++) {
        int parts = 0, part = 0;
        for (int j = 0; j < k; j++) {
            if (ord[j] == ord[i]) {
                if (j < i) part++;
                parts++;
            }
        }
        char w[200];
        rc = device_new(created, ord[i], part, parts, &out[created], w, sizeof w);
        if (rc) {
            if (!first_why[0]) snprintf(first_why, sizeof first_why, "card %d: %s", ord[i], w);
            continue;
        }
        created++;
    }
    *n = created;
    if (first_why[0])
        note_once(asked, created ? "CUDA: a GPU is unusable (%s); running without it"
                          : "CUDA: no usable GPU (%s); running on the CPU",
                  first_why);
    return LYRA_OK;
}

} /* extern "C" */
