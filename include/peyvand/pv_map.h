/* pv_map.h -- string-keyed hash map (open hashing, power-of-two buckets, FNV-1a).
 * Keys are copied; values are borrowed pointers the caller owns.  Not thread-safe: a map
 * belongs to one worker.  Iteration order is unspecified; removing the current entry
 * during pv_map_each is allowed (return 1 from the callback to remove it). */
#ifndef PV_MAP_H
#define PV_MAP_H

#include <stddef.h>

typedef struct pv_map pv_map;

pv_map *pv_map_new(void);
/* free_val (may be NULL) is called for every remaining value. */
void pv_map_free(pv_map *m, void (*free_val)(void *));
void *pv_map_get(const pv_map *m, const char *key);
/* Sets key -> val; returns the previous value or NULL. */
void *pv_map_put(pv_map *m, const char *key, void *val);
/* Removes key; returns its value or NULL. */
void *pv_map_del(pv_map *m, const char *key);
size_t pv_map_count(const pv_map *m);
/* cb returns 1 to remove the entry (its value is not freed), 0 to keep it. */
void pv_map_each(pv_map *m, int (*cb)(void *ud, const char *key, void *val), void *ud);

#endif
