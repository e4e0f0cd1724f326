/* pattern.h: the tests' random numbers and block patterns.
 *
 * splitmix64 drives every choice (seeded, so a run repeats); fill writes a
 * seed- and position-dependent pattern that verify checks. A prefix of a
 * fill equals the fill of the prefix (little-endian words), so a block
 * shrunk or grown by realloc keeps a checkable prefix.
 */
#ifndef PATTERN_H
#define PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Cheap position- and seed-dependent pattern word. */
static inline uint64_t pword(uint64_t seed, size_t i) { return (seed + i) * 0x9E3779B97F4A7C15ull; }

static inline void fill(unsigned char *p, size_t n, uint64_t seed) {
    size_t w = n / 8, i;
    for (i = 0; i < w; i++) {
        uint64_t v = pword(seed, i);
        memcpy(p + 8 * i, &v, 8);
    }
    uint64_t v = pword(seed, w);
    for (i = 8 * w; i < n; i++) p[i] = (unsigned char)(v >> (8 * (i - 8 * w)));
}
static inline int verify(const unsigned char *p, size_t n, uint64_t seed) {
    size_t w = n / 8, i;
    for (i = 0; i < w; i++) {
        uint64_t v = pword(seed, i), got;
        memcpy(&got, p + 8 * i, 8);
        if (got != v) return 0;
    }
    uint64_t v = pword(seed, w);
    for (i = 8 * w; i < n; i++)
        if (p[i] != (unsigned char)(v >> (8 * (i - 8 * w)))) return 0;
    return 1;
}

#endif
