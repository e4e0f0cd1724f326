/* calloc_recycle: calloc'd blocks of the large classes taken again after a
 * free are zero, whether the block's last use wrote a few of its pages or
 * all of them, and tables used sparsely do not stay resident in full.
 *
 * Rounds over 32 slots of 192..936 KiB: each round frees every slot and
 * callocs it again (the same sizes: the blocks are recycled), checks that
 * every word the last round wrote into it reads zero, then writes one word
 * per 64 KiB (and the last) into each slot: sparse rounds first, then dense
 * ones that write every word. Prints `sparse_kb N live_kb N` (the resident
 * set after the last sparse round, above the one at the start, and the
 * bytes calloc'd) and `ok 1`; exits non-zero on a word that is not zero. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rss.h"

#define SLOTS 32
#define SPARSE_ROUNDS 16
#define ROUNDS 24
#define STRIDE ((64u << 10) / 8)

int main(void) {
    uint64_t *slot[SLOTS] = { 0 };
    size_t words[SLOTS];
    long base_kb = rss_kb(), sparse_kb = 0, live_kb = 0;
    for (int i = 0; i < SLOTS; i++) words[i] = ((192u << 10) + (size_t)i * (24u << 10)) / 8;
    for (int round = 0; round < ROUNDS; round++) {
        int dense = round >= SPARSE_ROUNDS;
        live_kb = 0;
        for (int i = 0; i < SLOTS; i++) {
            free(slot[i]);
            slot[i] = calloc(words[i], 8);
            if (!slot[i]) return 2;
            /* What the last round wrote: every word (dense), or the sparse
             * ones; the last word always. */
            size_t step = round > SPARSE_ROUNDS ? 1 : STRIDE;
            for (size_t w = 0; w < words[i]; w += step) {
                if (slot[i][w] || slot[i][words[i] - 1]) {
                    printf("not zero: round %d slot %d word %zu\n", round, i, w);
                    return 1;
                }
            }
            for (size_t w = 0; w < words[i]; w += dense ? 1 : STRIDE) slot[i][w] = w + 1;
            slot[i][words[i] - 1] = 1;
            live_kb += (long)(words[i] * 8 / 1024);
        }
        if (!dense) sparse_kb = rss_kb() - base_kb;
    }
    for (int i = 0; i < SLOTS; i++) free(slot[i]);
    printf("sparse_kb %ld live_kb %ld ok 1\n", sparse_kb, live_kb);
    return 0;
}
