/* log.c -- one line per event on stderr:
 *   2026-11-29T07:20:24.123Z INFO subsystem message
 * The timestamp (UTC, milliseconds) is left out when PV_LOG_NO_TIME is set,
 * because journald stamps lines itself.
 *
 * Threading: safe from any thread.  Each line is formatted into a stack buffer
 * (no allocation, so the OOM path can log) and written with a single write(2);
 * lines are capped at 4 KiB (= PIPE_BUF on Linux), so writes to a pipe or the
 * journal socket are atomic and lines from different threads never interleave.
 * The level is a relaxed atomic: a level change need not be seen instantly. */
#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static atomic_int log_level = PV_LOG_INFO;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static bool log_no_time;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

static void log_init(void)
{
	/* Read once: getenv is not safe against a concurrent setenv, and the
	 * environment does not change under a running server. */
	log_no_time = getenv("PV_LOG_NO_TIME") != NULL;
}

void pv_log_set_level(pv_log_level lvl)
{
	if (lvl < PV_LOG_DEBUG)
		lvl = PV_LOG_DEBUG;
	if (lvl > PV_LOG_ERROR)
		lvl = PV_LOG_ERROR;
	atomic_store_explicit(&log_level, (int)lvl, memory_order_relaxed);
}

pv_log_level pv_log_get_level(void)
{
	return (pv_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int pv_log_level_parse(const char *s, pv_log_level *out)
{
	static const struct {
		const char *name;
		pv_log_level lvl;
	} names[] = {
		{"debug", PV_LOG_DEBUG}, {"info", PV_LOG_INFO},   {"warn", PV_LOG_WARN},
		{"warning", PV_LOG_WARN}, {"error", PV_LOG_ERROR},
	};
	if (!s)
		return PV_EINVAL;
	for (size_t i = 0; i < PV_ARRAY_LEN(names); i++) {
		if (strcasecmp(s, names[i].name) == 0) {
			*out = names[i].lvl;
			return PV_OK;
		}
	}
	return PV_EINVAL;
}

/* Replace control characters so text that came from a peer (a JID, a host name)
 * cannot forge extra log lines or terminal escapes. */
static void scrub(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			p[i] = '?';
	}
}

void pv_log(pv_log_level lvl, const char *subsys, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	size_t len = 0;
	int saved_errno = errno; /* callers often log and then inspect errno */

	if (lvl < PV_LOG_DEBUG || lvl > PV_LOG_ERROR)
		lvl = PV_LOG_ERROR;
	if ((int)lvl < atomic_load_explicit(&log_level, memory_order_relaxed))
		return;
	pthread_once(&log_once, log_init);

	if (!log_no_time) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		len += (size_t)snprintf(line + len, sizeof(line) - len, ".%03ldZ ",
					(long)(ts.tv_nsec / 1000000));
	}

	/* The text may fill the buffer up to its last byte, which holds the NUL
	 * during formatting and the newline afterwards; snprintf returns the
	 * untruncated length, hence the clamps. */
	size_t room = sizeof(line) - 1;
	int n = snprintf(line + len, sizeof(line) - len, "%s %s ", level_names[lvl],
			 subsys ? subsys : "-");
	if (n > 0)
		len = len + (size_t)n < room ? len + (size_t)n : room;

	va_list ap;
	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	va_end(ap);
	if (n > 0)
		len = len + (size_t)n < room ? len + (size_t)n : room;
	scrub(line, len);
	line[len++] = '\n';

	/* One write per line; retry only for EINTR.  A short write to a terminal or
	 * file is finished with the remainder rather than dropped. */
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(STDERR_FILENO, line + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break; /* nowhere left to report a logging failure */
		}
		off += (size_t)w;
	}
	errno = saved_errno;
}
