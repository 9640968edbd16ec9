/*
 * files.c — file-system chores of the test fixtures (see files.h).
 */
#include <ftw.h>
#include <stdio.h>

#include "files.h"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void rk_test_remove_tree(const char *dir)
{
    if (dir[0]) nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}
