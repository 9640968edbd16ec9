/*
 * pki.h — a throwaway public-key infrastructure for TLS tests.
 *
 * Nothing secret is committed to the repository: every TLS test makes its
 * own CA, server and client certificates at run time with the `openssl`
 * command (from $RK_OPENSSL, else `openssl` in $PATH), in a private
 * mkdtemp directory under /tmp that rk_test_pki_free() removes. Keys are
 * EC P-256 (fast to generate), unencrypted, valid for two days.
 *
 * Not thread-safe: make and free a PKI from one thread (normally a test
 * group's setup and teardown).
 */
#ifndef RK_TEST_PKI_H
#define RK_TEST_PKI_H

#ifdef __cplusplus
extern "C" {
#endif

#define RK_TEST_PKI_PATH_MAX 128

/* Absolute paths of the PEM files; all live in dir. */
typedef struct rk_test_pki {
    char dir[RK_TEST_PKI_PATH_MAX];
    char ca_cert[RK_TEST_PKI_PATH_MAX];       /* the CA that signed the two below */
    char ca_dir[RK_TEST_PKI_PATH_MAX];        /* a directory holding ca_cert under its
                                                 hash name (`openssl rehash`) */
    char server_cert[RK_TEST_PKI_PATH_MAX];   /* CN=localhost; subjectAltName DNS:localhost,
                                                 IP:127.0.0.1, IP:::1; serverAuth */
    char server_key[RK_TEST_PKI_PATH_MAX];
    char client_cert[RK_TEST_PKI_PATH_MAX];   /* CN=redkit-test-client; clientAuth */
    char client_key[RK_TEST_PKI_PATH_MAX];
    char other_ca_cert[RK_TEST_PKI_PATH_MAX]; /* an unrelated CA: trusting only it
                                                 must fail verification */
    /* Server certificates signed by ca_cert that must NOT pass for
     * "localhost" (host-name checks): */
    char server_cn_only_cert[RK_TEST_PKI_PATH_MAX]; /* CN=localhost, no subjectAltName */
    char server_cn_only_key[RK_TEST_PKI_PATH_MAX];
    char server_ip_only_cert[RK_TEST_PKI_PATH_MAX]; /* CN=localhost; subjectAltName
                                                       IP:127.0.0.1 only */
    char server_ip_only_key[RK_TEST_PKI_PATH_MAX];
} rk_test_pki;

/*
 * Make a fresh PKI. Each openssl run gets 30 s before it is killed.
 * Returns NULL, after printing why (and openssl's output) to stderr, on
 * failure. Free with rk_test_pki_free().
 */
rk_test_pki *rk_test_pki_new(void);

/* Remove the directory and its files, and free the handle. NULL is a no-op. */
void rk_test_pki_free(rk_test_pki *pki);

#ifdef __cplusplus
}
#endif

#endif /* RK_TEST_PKI_H */
