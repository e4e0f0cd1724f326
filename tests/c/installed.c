/* installed.c: a program built against an installed hakmem (pkg-config):
 * prints the version and proves its allocations went to hakmem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hakmem.h>

int main(void) {
    char *s = malloc(100);
    strcpy(s, "installed");
    struct hakmem_stats st;
    int rc = hakmem_stats_get(&st);
    printf("%s %s malloc_calls=%zu\n", hakmem_version(), s, rc == 0 ? st.malloc_calls : 0);
    free(s);
    return rc != 0 || st.malloc_calls == 0;
}
