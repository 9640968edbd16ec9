/*
 * compress.c — zstd compression of large cache values (contract and frame
 * format in compress.h; why zstd, in docs/cache.md "Compression").
 *
 * Only zstd's stable API is used, with one exception: ZSTD_customMem and
 * the ZSTD_create?Ctx_advanced() functions, which sit behind
 * ZSTD_STATIC_LINKING_ONLY, so that zstd allocates through rk__malloc like
 * the rest of redkit (a user allocator, or the allocation-failure tests,
 * then see zstd's memory too). Those three have kept their signatures since
 * zstd 1.0 and are exported by Debian's shared libzstd; if one ever went
 * away the build would fail at link time, not misbehave.
 *
 * Decompression never trusts the frame. The declared content size is the
 * only size ever allocated, and it is checked against the caller's bound
 * first; the frame's compressed extent must be exactly the input (one
 * frame, nothing truncated, nothing after it); zstd then decompresses into
 * a buffer of exactly that size, so it cannot write past it, and the
 * result must be that size and pass the frame's checksum.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_customMem, ZSTD_create?Ctx_advanced */
#include <zstd.h>
#include <zstd_errors.h>

#include "alloc.h"
#include "compress.h"
#include "error.h"

static void *z_alloc(void *opaque, size_t size)
{
    (void)opaque;
    return rk__malloc(size);
}

static void z_free(void *opaque, void *p)
{
    (void)opaque;
    if (p) rk__free(p);
}

static const ZSTD_customMem zmem = {z_alloc, z_free, NULL};

/* Take an idle context from slots, or NULL when there is none. */
static void *pool_take(_Atomic(void *) *slots)
{
    for (int i = 0; i < RK__ZPOOL_SLOTS; i++) {
        /* A relaxed look first: an empty slot costs no locked exchange. */
        if (!atomic_load_explicit(&slots[i], memory_order_relaxed)) continue;
        void *ctx = atomic_exchange_explicit(&slots[i], NULL, memory_order_acquire);
        if (ctx) return ctx;
    }
    return NULL;
}

/* Put ctx back into an empty slot; false when all are taken. */
static bool pool_give(_Atomic(void *) *slots, void *ctx)
{
    for (int i = 0; i < RK__ZPOOL_SLOTS; i++) {
        void *empty = NULL;
        if (atomic_compare_exchange_strong_explicit(&slots[i], &empty, ctx, memory_order_release,
                                                    memory_order_relaxed))
            return true;
    }
    return false;
}

void rk__zpool_clear(rk__zpool *pool)
{
    if (!pool) return;
    for (int i = 0; i < RK__ZPOOL_SLOTS; i++) {
        ZSTD_freeCCtx(atomic_exchange_explicit(&pool->cctx[i], NULL, memory_order_acquire));
        ZSTD_freeDCtx(atomic_exchange_explicit(&pool->dctx[i], NULL, memory_order_acquire));
    }
}

rk_status rk__compress(rk__zpool *pool, int level, const void *src, size_t n, void *dst, size_t cap,
                       size_t *out_len)
{
    *out_len = 0;
    if (level == 0) level = RK__COMPRESS_LEVEL_DEFAULT;
    if (level < RK__COMPRESS_LEVEL_MIN || level > RK__COMPRESS_LEVEL_MAX)
        return rk__fail(RK_ERR_INVALID, "compress_level: %d is outside %d..%d", level, RK__COMPRESS_LEVEL_MIN,
                        RK__COMPRESS_LEVEL_MAX);
    if (!src && n) return rk__fail(RK_ERR_INVALID, "compress: source is NULL");
    ZSTD_CCtx *cc = pool ? pool_take(pool->cctx) : NULL;
    if (!cc) cc = ZSTD_createCCtx_advanced(zmem);
    if (!cc) return rk__fail(RK_ERR_NOMEM, "compress: out of memory");

    /* Parameters stick to a context and the level is per call, so both
     * are set every time (it costs next to nothing). The checksum lets a
     * damaged value be reported instead of misread. */
    size_t r = ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r)) r = ZSTD_compress2(cc, dst, cap, src ? src : "", n);
    rk_status st = RK_OK;
    if (!ZSTD_isError(r)) {
        *out_len = r;
    } else {
        /* A failed call may leave a half-done session behind. */
        ZSTD_CCtx_reset(cc, ZSTD_reset_session_only);
        ZSTD_ErrorCode code = ZSTD_getErrorCode(r);
        if (code == ZSTD_error_memory_allocation)
            st = rk__fail(RK_ERR_NOMEM, "compress: out of memory");
        else if (code != ZSTD_error_dstSize_tooSmall)
            st = rk__fail(RK_ERR_INVALID, "compress: zstd: %s", ZSTD_getErrorName(r));
        /* dstSize_tooSmall: the frame would not fit, *out_len stays 0. */
    }
    if (!pool || !pool_give(pool->cctx, cc)) ZSTD_freeCCtx(cc);
    return st;
}

static rk_status corrupt(const char *why)
{
    return rk__fail(RK_ERR_TYPE, "value is corrupt: %s", why);
}

rk_status rk__decompress(rk__zpool *pool, const void *src, size_t n, size_t max_out, char **out,
                         size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    const unsigned char *p = src;
    if (!src || n < 4) return corrupt("compressed payload is too short");
    uint32_t magic = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    /* Only a data frame: zstd would accept a skippable frame too. */
    if (magic != ZSTD_MAGICNUMBER) return corrupt("not a zstd frame");
    ZSTD_frameHeader fh;
    if (ZSTD_getFrameHeader(&fh, src, n) != 0) return corrupt("damaged zstd frame header");
    unsigned long long size = fh.frameContentSize;
    if (size == ZSTD_CONTENTSIZE_UNKNOWN) return corrupt("zstd frame does not declare its size");
    if (size > max_out)
        return rk__fail(RK_ERR_TOO_LARGE,
                        "compressed value would expand to %llu bytes, over the cache's maximum of %zu", size,
                        max_out);
    /* Every frame redkit writes has one; without it damage would go
     * unnoticed, so a frame without it is not ours. */
    if (!fh.checksumFlag) return corrupt("zstd frame has no checksum");
    size_t extent = ZSTD_findFrameCompressedSize(src, n);
    if (ZSTD_isError(extent)) return corrupt("truncated or damaged zstd frame");
    if (extent != n) return corrupt("bytes after the zstd frame");

    char *buf = rk__malloc((size_t)size + 1);
    if (!buf) return rk__fail(RK_ERR_NOMEM, "decompress: out of memory");
    ZSTD_DCtx *dc = pool ? pool_take(pool->dctx) : NULL;
    if (!dc) dc = ZSTD_createDCtx_advanced(zmem);
    if (!dc) {
        rk__free(buf);
        return rk__fail(RK_ERR_NOMEM, "decompress: out of memory");
    }
    /* Exactly `size` bytes of room: a frame that holds more fails here
     * instead of writing past the buffer. */
    size_t r = ZSTD_decompressDCtx(dc, buf, (size_t)size, src, n);
    if (ZSTD_isError(r)) ZSTD_DCtx_reset(dc, ZSTD_reset_session_only);
    if (!pool || !pool_give(pool->dctx, dc)) ZSTD_freeDCtx(dc);
    rk_status st = RK_OK;
    if (ZSTD_isError(r))
        st = ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation
                 ? rk__fail(RK_ERR_NOMEM, "decompress: out of memory")
                 : rk__fail(RK_ERR_TYPE, "value is corrupt: zstd: %s", ZSTD_getErrorName(r));
    else if (r != size)
        st = corrupt("zstd frame holds fewer bytes than it declares");
    if (st != RK_OK) {
        rk__free(buf);
        return st;
    }
    buf[size] = '\0';
    *out = buf;
    *out_len = (size_t)size;
    return RK_OK;
}
