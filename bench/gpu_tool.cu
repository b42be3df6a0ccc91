/* gpu_tool.cu: two small helpers for scripts/gpu-check.sh on a lent GPU
 * (built there with nvcc; not part of lyra).
 *
 *   gpu_tool bw [MIB]
 *       device-to-device copy bandwidth: cudaMemcpyAsync of a MIB buffer
 *       (default 1024) into another, 3 warm-ups then the best of 10 timed with
 *       events; prints "copy_gbs X" counting bytes read + written (GB = 1e9),
 *       the bound decode is measured against (every weight byte read once).
 *   gpu_tool ballast LEAVE_MIB SECONDS
 *       allocate the GPU's free memory but LEAVE_MIB (in 1 GiB pieces, then
 *       smaller ones until an allocation fails), print "ballast: holding X
 *       MiB, free Y MiB" and hold it for SECONDS or until killed: a real
 *       out-of-memory for the program run beside it.
 * Exit 1 with a message on any CUDA error. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CK(x)                                                                            \
    do {                                                                                 \
        cudaError_t e_ = (x);                                                            \
        if (e_ != cudaSuccess) {                                                         \
            fprintf(stderr, "gpu_tool: %s: %s\n", #x, cudaGetErrorString(e_));           \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static int bw(size_t mib) {
    size_t n = mib << 20;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    cudaEvent_t t0, t1;
    CK(cudaEventCreate(&t0));
    CK(cudaEventCreate(&t1));
    float best = 1e30f;
    for (int i = 0; i < 13; i++) {
        CK(cudaEventRecord(t0));
        CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(t1));
        CK(cudaEventSynchronize(t1));
        float ms;
        CK(cudaEventElapsedTime(&ms, t0, t1));
        if (i >= 3 && ms < best) best = ms;
    }
    double gbs = 2.0 * (double)n / (best * 1e-3) / 1e9;
    printf("copy_gbs %.1f (%zu MiB copied in %.3f ms, read + write)\n", gbs, mib, best);
    return 0;
}

static int ballast(size_t leave_mib, int seconds) {
    size_t f, t;
    CK(cudaMemGetInfo(&f, &t));
    size_t leave = leave_mib << 20, held = 0;
    size_t pieces[] = {(size_t)1 << 30, (size_t)256 << 20, (size_t)16 << 20, (size_t)1 << 20};
    for (int k = 0; k < 4; k++) {
        for (;;) {
            CK(cudaMemGetInfo(&f, &t));
            if (f < leave + pieces[k]) break;
            void *p;
            if (cudaMalloc(&p, pieces[k]) != cudaSuccess) {
                (void)cudaGetLastError();
                break;
            }
            held += pieces[k];
        }
    }
    CK(cudaMemGetInfo(&f, &t));
    printf("ballast: holding %zu MiB, free %zu MiB of %zu MiB\n", held >> 20, f >> 20, t >> 20);
    fflush(stdout);
    sleep((unsigned)seconds);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "bw")) return bw(argc >= 3 ? (size_t)atol(argv[2]) : 1024);
    if (argc >= 4 && !strcmp(argv[1], "ballast")) return ballast((size_t)atol(argv[2]), atoi(argv[3]));
    fprintf(stderr, "usage: gpu_tool bw [MIB] | gpu_tool ballast LEAVE_MIB SECONDS\n");
    return 2;
}
