/* map.c -- string-keyed hash map; see map.h.  Grows at load factor 1; never shrinks
 * (maps here hold sessions and counters whose peak is what matters). */
#include "peyvand/pv_map.h"

#include <string.h>

#include "peyvand/pv_util.h"

typedef struct ent {
	struct ent *next;
	void *val;
	unsigned hash;
	char key[];
} ent;

struct pv_map {
	ent **b;
	size_t nb, n;
};

static unsigned hash_str(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

pv_map *pv_map_new(void)
{
	pv_map *m = pv_calloc(1, sizeof(*m));
	m->nb = 16;
	m->b = pv_calloc(m->nb, sizeof(ent *));
	return m;
}

void pv_map_free(pv_map *m, void (*free_val)(void *))
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nb; i++) {
		for (ent *e = m->b[i], *nx; e; e = nx) {
			nx = e->next;
			if (free_val)
				free_val(e->val);
			pv_free(e);
		}
	}
	pv_free(m->b);
	pv_free(m);
}

static ent **find(const pv_map *m, const char *key, unsigned h)
{
	ent **pp = &m->b[h & (m->nb - 1)];
	while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
		pp = &(*pp)->next;
	return pp;
}

void *pv_map_get(const pv_map *m, const char *key)
{
	ent *e = *find(m, key, hash_str(key));
	return e ? e->val : NULL;
}

static void grow(pv_map *m)
{
	size_t nb = m->nb * 2;
	ent **b = pv_calloc(nb, sizeof(ent *));
	for (size_t i = 0; i < m->nb; i++) {
		for (ent *e = m->b[i], *nx; e; e = nx) {
			nx = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	pv_free(m->b);
	m->b = b;
	m->nb = nb;
}

void *pv_map_put(pv_map *m, const char *key, void *val)
{
	unsigned h = hash_str(key);
	ent **pp = find(m, key, h);
	if (*pp) {
		void *old = (*pp)->val;
		(*pp)->val = val;
		return old;
	}
	size_t kl = strlen(key);
	ent *e = pv_malloc(sizeof(*e) + kl + 1);
	memcpy(e->key, key, kl + 1);
	e->hash = h;
	e->val = val;
	e->next = NULL;
	*pp = e;
	if (++m->n > m->nb)
		grow(m);
	return NULL;
}

void *pv_map_del(pv_map *m, const char *key)
{
	ent **pp = find(m, key, hash_str(key));
	ent *e = *pp;
	if (!e)
		return NULL;
	void *v = e->val;
	*pp = e->next;
	pv_free(e);
	m->n--;
	return v;
}

size_t pv_map_count(const pv_map *m)
{
	return m->n;
}

void pv_map_each(pv_map *m, int (*cb)(void *ud, const char *key, void *val), void *ud)
{
	for (size_t i = 0; i < m->nb; i++) {
		ent **pp = &m->b[i];
		while (*pp) {
			ent *e = *pp;
			if (cb(ud, e->key, e->val)) {
				*pp = e->next;
				pv_free(e);
				m->n--;
			} else {
				pp = &e->next;
			}
		}
	}
}
