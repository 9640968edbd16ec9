/*
 * compress.h — compression of large cache values, with zstd.
 *
 * zstd was chosen over LZ4 by measuring both on JSON API responses
 * (bench/compress_bench.c; figures and reasons in docs/cache.md,
 * "Compression"): at level 1 it stores them in about 60 % of the space LZ4
 * needs, and still decompresses a 64 KiB page in about 30 µs.
 *
 * The compressed form of a value (the payload of a value whose header has
 * RK__VF_COMPRESSED, see value.h) is exactly one standard zstd frame that
 * declares its content size and carries a content checksum, so that
 * `zstd -d` can read a value saved from Redis, and so that a damaged value
 * is reported as corrupt instead of decoded into wrong bytes.
 *
 * Decompression treats its input as hostile: the declared size is checked
 * against the caller's bound before anything is allocated, exactly one
 * frame must fill the input, and the output must match the declared size
 * and the checksum. No input can make it allocate more than the bound (+1)
 * or crash.
 *
 * Contexts. Creating a zstd context for each call costs more than
 * compressing a 1 KiB value with it (bench/compress_bench.c, the
 * "zstd-1 new" line), so each cache handle keeps a few idle contexts in an
 * rk__zpool, taken and put back with one atomic exchange each. All of
 * zstd's memory comes from redkit's allocator (rk__malloc).
 */
#ifndef RK_SRC_COMPRESS_H
#define RK_SRC_COMPRESS_H

#include <stdatomic.h>
#include <stddef.h>

#include <redkit/status.h>

/* Levels accepted in rk_cache_options.compress_level: zstd's fast levels
 * -7..-1, and its normal levels 1..19 (20..22 need windows far larger than
 * a cache value). 0 selects RK__COMPRESS_LEVEL_DEFAULT. */
#define RK__COMPRESS_LEVEL_MIN (-7)
#define RK__COMPRESS_LEVEL_MAX 19
#define RK__COMPRESS_LEVEL_DEFAULT 1

/* Idle contexts a pool keeps, of each kind; more concurrent calls than
 * this create (and free) their own. */
#define RK__ZPOOL_SLOTS 4

/* A handle's idle zstd contexts. All-zero is a valid empty pool (the
 * handle is calloc'ed); rk__zpool_clear() frees what it holds. Any number
 * of threads may use one pool at once. */
typedef struct rk__zpool {
    _Atomic(void *) cctx[RK__ZPOOL_SLOTS];
    _Atomic(void *) dctx[RK__ZPOOL_SLOTS];
} rk__zpool;

/* Free the pool's idle contexts (not the pool itself). NULL is a no-op.
 * No other thread may be using the pool. */
void rk__zpool_clear(rk__zpool *pool);

/*
 * rk__compress — compress src[0..n-1] (src may be NULL when n is 0) at
 * level (0 = the default) into dst[0..cap-1], which the caller owns.
 *
 * On RK_OK *out_len is the size of the frame written, or 0 when the frame
 * would not fit in cap: a caller that passes cap < n learns that way that
 * compression does not pay, without a second buffer. pool may be NULL (a
 * context is then made for this call alone). Returns RK_OK, RK_ERR_INVALID
 * (level out of range) or RK_ERR_NOMEM.
 */
rk_status rk__compress(rk__zpool *pool, int level, const void *src, size_t n, void *dst, size_t cap,
                       size_t *out_len);

/*
 * rk__decompress — decompress the frame src[0..n-1] into a new buffer.
 *
 * On RK_OK *out is a buffer of *out_len + 1 bytes from rk__malloc, owned by
 * the caller (rk__free), holding the original bytes followed by a NUL that
 * *out_len does not count. On every failure *out is NULL and *out_len 0.
 * Returns RK_OK; RK_ERR_TOO_LARGE when the frame declares more than
 * max_out bytes (nothing is allocated for it); RK_ERR_TYPE for anything
 * that is not one intact frame of ours ("value is corrupt: ..."); or
 * RK_ERR_NOMEM. pool may be NULL.
 */
rk_status rk__decompress(rk__zpool *pool, const void *src, size_t n, size_t max_out, char **out,
                         size_t *out_len);

#endif
