/*
 * files.h — file-system chores of the test fixtures (the redis-server and
 * PKI directories under /tmp).
 */
#ifndef RK_TEST_FILES_H
#define RK_TEST_FILES_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Remove dir and everything below it, depth first, without following
 * symbolic links; errors are ignored (what cannot be removed stays). An
 * empty dir ("") is a no-op.
 */
void rk_test_remove_tree(const char *dir);

#ifdef __cplusplus
}
#endif

#endif /* RK_TEST_FILES_H */
