/* config.h -- the configuration file (YAML, libyaml) as a read-only tree.
 *
 * The core reads its own keys; each module reads the keys under its name, so no single
 * file knows every key (docs/config.md lists them all).  Paths use dots: "c2s.port".
 * A tree is immutable after load; reload builds a new tree and swaps it. */
#ifndef PV_CORE_CONFIG_H
#define PV_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pv_conf pv_conf;
typedef enum { PV_CONF_SCALAR, PV_CONF_MAP, PV_CONF_LIST } pv_conf_type;

/* Parse a YAML file. On error returns NULL and sets *err to "file:line: message"
 * (caller frees). */
pv_conf *pv_conf_load(const char *path, char **err);
pv_conf *pv_conf_parse(const char *text, size_t len, char **err);
void pv_conf_free(pv_conf *c);

pv_conf_type pv_conf_type_of(const pv_conf *n);
/* Node at a dotted path under n (map keys only), or NULL. */
const pv_conf *pv_conf_get(const pv_conf *n, const char *path);
/* Typed getters with defaults.  A value present but of the wrong type (e.g. "abc" for
 * an int) makes the getter return the default and record an error retrievable with
 * pv_conf_errors() -- used by --check-config. */
const char *pv_conf_str(const pv_conf *n, const char *path, const char *def);
int64_t pv_conf_int(const pv_conf *n, const char *path, int64_t def);
bool pv_conf_bool(const pv_conf *n, const char *path, bool def);
/* Byte sizes accept suffixes: 256k, 1m, 1g (powers of 1024). */
int64_t pv_conf_size(const pv_conf *n, const char *path, int64_t def);
/* Durations accept suffixes: 500ms, 30s, 5m, 2h, 3d; returns milliseconds. */
int64_t pv_conf_ms(const pv_conf *n, const char *path, int64_t def_ms);

/* Maps and lists. */
size_t pv_conf_len(const pv_conf *n);                 /* entries of map/list, 0 otherwise */
const char *pv_conf_key_at(const pv_conf *n, size_t i); /* map key i */
const pv_conf *pv_conf_at(const pv_conf *n, size_t i);  /* value i of map or list */
const char *pv_conf_scalar(const pv_conf *n);          /* NULL unless scalar */
bool pv_conf_list_has(const pv_conf *list, const char *value);
int pv_conf_line(const pv_conf *n);                     /* source line, for messages */

/* Errors found by getters so far ("file:line: key: expected integer"), newline-separated,
 * or NULL.  Borrowed. */
const char *pv_conf_errors(const pv_conf *root);

#endif
