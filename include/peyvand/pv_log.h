/* pv_log.h -- one line per event: "LEVEL subsystem[ctx] message key=value".
 *
 * Writes to stderr (journald picks it up) with a single write(2) per line, so lines
 * from several threads never interleave.  Never pass passwords, SASL payloads,
 * tokens or message bodies at info level or above. */
#ifndef PV_LOG_H
#define PV_LOG_H

typedef enum { PV_LOG_DEBUG = 0, PV_LOG_INFO, PV_LOG_WARN, PV_LOG_ERROR } pv_log_level;

void pv_log_set_level(pv_log_level lvl);
pv_log_level pv_log_get_level(void);
int pv_log_level_parse(const char *s, pv_log_level *out); /* "debug"|"info"|"warn"|"error" */
void pv_log(pv_log_level lvl, const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define pv_debug(sub, ...) \
	do { if (pv_log_get_level() <= PV_LOG_DEBUG) pv_log(PV_LOG_DEBUG, sub, __VA_ARGS__); } while (0)
#define pv_info(sub, ...) pv_log(PV_LOG_INFO, sub, __VA_ARGS__)
#define pv_warn(sub, ...) pv_log(PV_LOG_WARN, sub, __VA_ARGS__)
#define pv_error(sub, ...) pv_log(PV_LOG_ERROR, sub, __VA_ARGS__)

#endif
