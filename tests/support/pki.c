/*
 * pki.c — make a throwaway CA, server and client certificates with the
 * openssl command (see pki.h).
 *
 * The openssl command rather than the library: it is what an operator
 * would run, so the files are the ordinary kind a redis-server and redkit
 * meet in the field, and the test support stays independent of the code
 * under test. Its configuration is written next to the files, so the
 * result does not depend on the system's openssl.cnf. Every run is a
 * fork/exec with a bounded wait; its output goes to openssl.log, printed
 * when something fails.
 */
#include "pki.h"

#include "clock.h"
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_LIMIT_MS 30000
#define MAX_ARGS 40

static const char config[] =
    "# written by tests/support/pki.c\n"
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = unused\n"
    "[ca_ext]\n"
    "basicConstraints = critical, CA:TRUE\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[server_ext]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n"
    "[server_cn_only_ext]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n"
    "[server_ip_only_ext]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = IP:127.0.0.1\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n"
    "[client_ext]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n";

static const char *openssl_binary(void)
{
    const char *b = getenv("RK_OPENSSL");
    return b && *b ? b : "openssl";
}

static void print_log(const rk_test_pki *p)
{
    char path[RK_TEST_PKI_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/openssl.log", p->dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "rk_test_pki: --- openssl output ---\n%s\n--- end ---\n", buf);
}

/* Run openssl with args (NULL-terminated, without the program name) in
 * p->dir, output appended to openssl.log. True when it exits 0 in time. */
static bool run(const rk_test_pki *p, const char *const *args)
{
    const char *argv[MAX_ARGS + 2];
    size_t n = 0;
    argv[n++] = openssl_binary();
    for (size_t i = 0; args[i]; i++) {
        if (n > MAX_ARGS) return false;
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    char log[RK_TEST_PKI_PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/openssl.log", p->dir);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "rk_test_pki: fork: %s\n", strerror(errno));
        return false;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        if (chdir(p->dir) != 0) _exit(127);
        int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (out >= 0) {
            dup2(out, STDOUT_FILENO);
            dup2(out, STDERR_FILENO);
        }
        if (in >= 0) dup2(in, STDIN_FILENO);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    int64_t deadline = rk_test_now_ms() + RUN_LIMIT_MS;
    for (int i = 0; i < RUN_LIMIT_MS / 5 + 2; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (r < 0 && errno != EINTR) return false;
        if (rk_test_now_ms() >= deadline) break;
        rk_test_sleep_ms(5);
    }
    fprintf(stderr, "rk_test_pki: %s took more than %d ms, killed\n", argv[0], RUN_LIMIT_MS);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return false;
}

static void path_in(const rk_test_pki *p, char *out, const char *name)
{
    snprintf(out, RK_TEST_PKI_PATH_MAX, "%.80s/%.40s", p->dir, name); /* dir is /tmp/rk-pki-XXXXXX */
}

/* A self-signed CA certificate and its key. */
static bool make_ca(const rk_test_pki *p, const char *cert, const char *key, const char *subject)
{
    const char *args[] = {"req", "-x509", "-config", "openssl.cnf", "-extensions", "ca_ext",
                          "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                          "-keyout", key, "-out", cert, "-days", "2", "-subj", subject, NULL};
    return run(p, args);
}

/* A key, and a certificate for it signed by the CA, with the extensions of
 * section ext. */
static bool make_leaf(const rk_test_pki *p, const char *cert, const char *key, const char *subject,
                      const char *ext, const char *serial)
{
    char csr[RK_TEST_PKI_PATH_MAX + 8];
    snprintf(csr, sizeof csr, "%s.csr", cert);
    const char *req[] = {"req", "-new", "-config", "openssl.cnf", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                         "-subj", subject, NULL};
    const char *sign[] = {"x509", "-req", "-in", csr, "-CA", p->ca_cert, "-CAkey", "ca.key",
                          "-set_serial", serial, "-days", "2", "-extfile", "openssl.cnf",
                          "-extensions", ext, "-out", cert, NULL};
    return run(p, req) && run(p, sign);
}

/* Copy ca_cert into ca_dir and let openssl add its hash link there. */
static bool make_ca_dir(const rk_test_pki *p)
{
    char copy[RK_TEST_PKI_PATH_MAX + 8];
    snprintf(copy, sizeof copy, "%s/ca.pem", p->ca_dir);
    if (mkdir(p->ca_dir, 0700) != 0) return false;
    FILE *in = fopen(p->ca_cert, "r"), *out = fopen(copy, "w");
    bool ok = in && out;
    char buf[4096];
    for (int i = 0; ok && i < 1024; i++) {
        size_t n = fread(buf, 1, sizeof buf, in);
        if (n == 0) break;
        ok = fwrite(buf, 1, n, out) == n;
    }
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = false;
    const char *args[] = {"rehash", p->ca_dir, NULL};
    return ok && run(p, args);
}

rk_test_pki *rk_test_pki_new(void)
{
    rk_test_pki *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->dir, sizeof p->dir, "/tmp/rk-pki-XXXXXX");
    if (!mkdtemp(p->dir)) {
        fprintf(stderr, "rk_test_pki: mkdtemp: %s\n", strerror(errno));
        free(p);
        return NULL;
    }
    char cnf[RK_TEST_PKI_PATH_MAX];
    path_in(p, cnf, "openssl.cnf");
    FILE *f = fopen(cnf, "w");
    bool ok = f && fputs(config, f) >= 0;
    if (f && fclose(f) != 0) ok = false;
    if (!ok) fprintf(stderr, "rk_test_pki: cannot write %s\n", cnf);

    path_in(p, p->ca_cert, "ca.pem");
    path_in(p, p->ca_dir, "cadir");
    path_in(p, p->server_cert, "server.pem");
    path_in(p, p->server_key, "server.key");
    path_in(p, p->client_cert, "client.pem");
    path_in(p, p->client_key, "client.key");
    path_in(p, p->other_ca_cert, "other-ca.pem");
    path_in(p, p->server_cn_only_cert, "server-cn-only.pem");
    path_in(p, p->server_cn_only_key, "server-cn-only.key");
    path_in(p, p->server_ip_only_cert, "server-ip-only.pem");
    path_in(p, p->server_ip_only_key, "server-ip-only.key");
    ok = ok && make_ca(p, p->ca_cert, "ca.key", "/CN=redkit test CA") &&
         make_leaf(p, p->server_cert, p->server_key, "/CN=localhost", "server_ext", "2") &&
         make_leaf(p, p->client_cert, p->client_key, "/CN=redkit-test-client", "client_ext", "3") &&
         make_leaf(p, p->server_cn_only_cert, p->server_cn_only_key, "/CN=localhost", "server_cn_only_ext", "4") &&
         make_leaf(p, p->server_ip_only_cert, p->server_ip_only_key, "/CN=localhost", "server_ip_only_ext", "5") &&
         make_ca(p, p->other_ca_cert, "other-ca.key", "/CN=redkit unrelated CA") && make_ca_dir(p);
    if (!ok) {
        fprintf(stderr, "rk_test_pki: could not make the test certificates with %s\n", openssl_binary());
        print_log(p);
        rk_test_pki_free(p);
        return NULL;
    }
    return p;
}

void rk_test_pki_free(rk_test_pki *p)
{
    if (!p) return;
    rk_test_remove_tree(p->dir);
    free(p);
}
